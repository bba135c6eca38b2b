"""The device dashboard: pages, the REST API (``/api/*``), and the live feed
(``/api/watch``, a WebSocket that pushes the device's state once per refresh period and
at once when something changes). Every page and API call but the login needs a session;
changing settings and running tools needs the admin account. Schemas: README, "Dashboard".
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable
from importlib import resources
from typing import Any, Callable

import mipfast

from . import auth
from .http import Request, Response, Upgrade
from .watch import Watchers

log = logging.getLogger("mipfast.dashboard")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FAULTS = ("loss", "duplicate", "corrupt", "reorder")
CAPTURE_DEFAULT = 8 << 20
CAPTURE_MAX = 64 << 20
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/login": ("login.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/login.js": ("login.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
PUBLIC = {"/login", "/static/login.js", "/static/style.css", "/api/login"}
#: The pages may load only what the device itself serves.
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]

Route = Callable[[Request, auth.Session], Awaitable["Response | Upgrade"]]


def _static(name: str) -> bytes:
    return resources.files("mipfast.dashboard").joinpath("static", name).read_bytes()


class Dashboard:
    def __init__(self, stack: Any, accounts: auth.Accounts, refresh: float = 1.0) -> None:
        self.stack = stack
        self.accounts = accounts
        self.sessions = auth.Sessions()
        self.throttle = auth.LoginThrottle()
        self.refresh = refresh
        self.started = time.monotonic()
        self.watchers = Watchers(self)
        self.extensions: dict[str, Callable[[], Any]] = {}  # more sections of the snapshot
        self._pages = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}
        self._routes: dict[tuple[str, str], tuple[Route, bool]] = {
            ("GET", "/api/session"): (self._session, False),
            ("POST", "/api/logout"): (self._logout, False),
            ("GET", "/api/status"): (self._status, False),
            ("GET", "/api/arp"): (self._arp, False),
            ("GET", "/api/connections"): (self._connections, False),
            ("GET", "/api/udp"): (self._udp, False),
            ("GET", "/api/config"): (self._config, False),
            ("POST", "/api/config"): (self._set_config, True),
            ("POST", "/api/tools/ping"): (self._ping, True),
            ("POST", "/api/tools/dns"): (self._dns, True),
            ("POST", "/api/tools/connect"): (self._connect_test, True),
            ("GET", "/api/watch"): (self._watch, False),
            ("GET", "/api/capture"): (self._capture_info, False),
            ("POST", "/api/capture/start"): (self._capture_start, True),
            ("POST", "/api/capture/stop"): (self._capture_stop, True),
            ("GET", "/api/capture.pcap"): (self._capture_file, True),
        }

    def route(self, method: str, path: str, handler: Route, admin: bool = False) -> None:
        """Adds an API route (capture, MQTT… plug in here)."""
        self._routes[(method, path)] = (handler, admin)

    # -- dispatch --

    async def __call__(self, req: Request) -> Response | Upgrade:
        if req.method == "POST" and req.path == "/api/login":
            return await self._login(req)
        session = self.sessions.get(req.cookies.get(auth.COOKIE))
        if req.path in self._pages:
            if req.method not in ("GET", "HEAD"):
                return Response.error(405, "method not allowed", [("Allow", "GET, HEAD")])
            if session is None and req.path not in PUBLIC:
                return Response(302, b"", headers=[("Location", "/login")])
            body, kind = self._pages[req.path]
            return Response(200, body, kind, list(SECURITY_HEADERS))
        methods = [m for (m, p) in self._routes if p == req.path]
        if not methods:
            return Response.error(404, "not found")
        entry = self._routes.get((req.method, req.path))
        if entry is None:
            return Response.error(405, "method not allowed", [("Allow", ", ".join(methods))])
        handler, admin_only = entry
        if session is None:
            return Response.error(401, "log in first")
        if req.method != "GET":
            problem = _csrf_problem(req, session)
            if problem:
                return Response.error(403, problem)
        if admin_only and not session.is_admin:
            return Response.error(403, "only the admin account may do this")
        return await handler(req, session)

    # -- session --

    async def _login(self, req: Request) -> Response:
        if _cross_origin(req):
            return Response.error(403, "cross-origin login refused")
        try:
            body = req.json()
            name, password = str(body["username"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return Response.error(400, 'send {"username": ..., "password": ...}')
        client = req.client[0]
        wait = self.throttle.delay(client)
        if wait:
            await asyncio.sleep(wait)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.accounts.check, name, password)
        if not ok:
            self.throttle.failed(client)
            log.warning("failed login for %r from %s", name, client)
            return Response.error(401, "wrong user name or password")
        self.throttle.succeeded(client)
        s = self.sessions.open(name)
        log.info("%s logged in from %s", name, client)
        return Response.json(_session_json(s), headers=[("Set-Cookie", self.sessions.cookie(s))])

    async def _session(self, req: Request, s: auth.Session) -> Response:
        return Response.json(_session_json(s))

    async def _logout(self, req: Request, s: auth.Session) -> Response:
        self.sessions.close(s.token)
        return Response.json({"ok": True}, headers=[("Set-Cookie", self.sessions.cleared_cookie())])

    # -- state --

    def status(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.stack.stats()
        stats["interface"] = self.stack.interface
        stats["dashboard"] = {
            "uptime": time.monotonic() - self.started,
            "clients": self.watchers.server_clients(),
            "watchers": len(self.watchers),
        }
        return stats

    def config(self) -> dict[str, Any]:
        return {
            "log_level": logging.getLevelName(logging.getLogger("mipfast").getEffectiveLevel()),
            "refresh": self.refresh,
            "congestion": self.stack.congestion,
            "faults": {k: (self.stack.faults or {}).get(k, 0.0) for k in FAULTS},
        }

    def snapshot(self) -> dict[str, Any]:
        snap = {
            "type": "snapshot",
            "time": time.time(),
            "status": self.status(),
            "arp": self.stack.arp_table(),
            "connections": self.stack.connections(),
            "udp": self.stack.udp_sockets(),
            "config": self.config(),
            "capture": self.stack.capture_info,
        }
        for name, section in self.extensions.items():
            snap[name] = section()
        return snap

    async def _status(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.status())

    async def _arp(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.stack.arp_table())

    async def _connections(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.stack.connections())

    async def _udp(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.stack.udp_sockets())

    async def _config(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.config())

    async def _set_config(self, req: Request, s: auth.Session) -> Response:
        try:
            change = req.json()
            if not isinstance(change, dict):
                raise ValueError("send a JSON object of settings")
            self.apply(change)
        except (ValueError, TypeError) as e:
            return Response.error(400, str(e))
        log.info("%s changed settings: %s", s.user, change)
        self.watchers.changed()
        return Response.json(self.config())

    def apply(self, change: dict[str, Any]) -> None:
        """Validates every setting first, then applies them all (none if one is wrong)."""
        unknown = set(change) - {"log_level", "refresh", "congestion", "faults"}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        steps: list[Callable[[], None]] = []
        if "log_level" in change:
            level = str(change["log_level"]).upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
            steps.append(lambda: _set_log_level(level))
        if "refresh" in change:
            refresh = float(change["refresh"])
            if not 0.2 <= refresh <= 60:
                raise ValueError("refresh must be between 0.2 and 60 seconds")
            steps.append(lambda: setattr(self, "refresh", refresh))
        if "congestion" in change:
            algorithm = str(change["congestion"])
            if algorithm not in ("cubic", "newreno"):
                raise ValueError("congestion must be cubic or newreno")
            steps.append(lambda: setattr(self.stack, "congestion", algorithm))
        if "faults" in change:
            faults = change["faults"]
            if not isinstance(faults, dict) or set(faults) - set(FAULTS):
                raise ValueError(f"faults takes {', '.join(FAULTS)} (probabilities 0..1)")
            values = {k: float(v) for k, v in faults.items()}
            if any(not 0 <= v <= 1 for v in values.values()):
                raise ValueError("fault probabilities are within 0..1")
            active = {k: v for k, v in values.items() if v > 0}
            steps.append(lambda: self.stack.set_faults(active or None))
        for step in steps:
            step()

    # -- tools, run from the device through the stack --

    async def _ping(self, req: Request, s: auth.Session) -> Response:
        try:
            body = req.json()
            host, count = str(body["host"]), int(body.get("count", 4))
        except (ValueError, KeyError, TypeError, AttributeError):
            return Response.error(400, 'send {"host": ..., "count": n}')
        count = max(1, min(count, 20))
        return await self._tool(lambda: {"host": host, "rtts": self.stack.ping(host, count, 1.0)})

    async def _dns(self, req: Request, s: auth.Session) -> Response:
        try:
            name = str(req.json()["name"])
        except (ValueError, KeyError, TypeError):
            return Response.error(400, 'send {"name": ...}')
        return await self._tool(lambda: {"name": name, "addresses": self.stack.resolve(name, 5.0)})

    async def _connect_test(self, req: Request, s: auth.Session) -> Response:
        try:
            body = req.json()
            host, port = str(body["host"]), int(body["port"])
        except (ValueError, KeyError, TypeError):
            return Response.error(400, 'send {"host": ..., "port": n}')

        def connect() -> dict[str, Any]:
            start = time.perf_counter()
            with self.stack.connect((host, port), 5.0) as c:
                took = time.perf_counter() - start
                return {
                    "host": host,
                    "port": port,
                    "connected": True,
                    "seconds": took,
                    "local": c.getsockname(),
                }

        return await self._tool(connect)

    async def _tool(self, work: Callable[[], dict[str, Any]]) -> Response:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, work)
        except OSError as e:
            return Response.json({"ok": False, "error": str(e) or type(e).__name__})
        except ValueError as e:
            return Response.error(400, str(e))
        return Response.json({"ok": True, **result})

    # -- capture of the stack's own frames --

    async def _capture_info(self, req: Request, s: auth.Session) -> Response:
        return Response.json(self.stack.capture_info)

    async def _capture_start(self, req: Request, s: auth.Session) -> Response:
        try:
            body = req.json() or {}
            limit = int(body.get("limit", CAPTURE_DEFAULT))
        except (ValueError, TypeError, AttributeError):
            return Response.error(400, 'send {"limit": bytes} or nothing')
        if not 64 * 1024 <= limit <= CAPTURE_MAX:
            return Response.error(400, f"limit must be between 64 KiB and {CAPTURE_MAX >> 20} MiB")
        self.stack.capture_start(limit)
        log.info("%s started a capture (up to %d bytes)", s.user, limit)
        self.watchers.changed()
        return Response.json(self.stack.capture_info)

    async def _capture_stop(self, req: Request, s: auth.Session) -> Response:
        self.stack.capture_stop()
        self.watchers.changed()
        return Response.json(self.stack.capture_info)

    async def _capture_file(self, req: Request, s: auth.Session) -> Response:
        name = f"mipfast-{time.strftime('%Y%m%d-%H%M%S')}.pcap"
        disposition = ("Content-Disposition", f'attachment; filename="{name}"')
        return Response(200, self.stack.capture_pcap(), "application/vnd.tcpdump.pcap", [disposition])

    # -- live feed --

    async def _watch(self, req: Request, s: auth.Session) -> Response | Upgrade:
        if not req.wants_websocket:
            return Response.error(400, "this is a WebSocket endpoint")
        key = req.headers.get("sec-websocket-key")
        if not key or req.headers.get("sec-websocket-version") != "13":
            return Response.error(400, "a WebSocket handshake needs Sec-WebSocket-Key and version 13")
        if _cross_origin(req):
            return Response.error(403, "cross-origin WebSocket refused")
        return self.watchers.upgrade(key, s)


def _session_json(s: auth.Session) -> dict[str, Any]:
    return {"user": s.user, "role": s.role, "admin": s.is_admin, "csrf": s.csrf}


def _cross_origin(req: Request) -> bool:
    """A browser names the page's origin; it must be this host (any scheme)."""
    origin = req.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    host = req.headers.get("host", "")
    return origin.split("://", 1)[-1] != host


def _csrf_problem(req: Request, s: auth.Session) -> str | None:
    if _cross_origin(req):
        return "cross-origin request refused"
    token = req.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(token.encode(), s.csrf.encode()):
        return "missing or wrong X-CSRF-Token"
    return None


def _set_log_level(level: str) -> None:
    logging.getLogger("mipfast").setLevel(level)
    mipfast.reset_logging()  # the Rust side caches levels
