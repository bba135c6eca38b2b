"""The device dashboard, served by the stack itself (``python -m mipfast`` starts it on port
8000): a login with two accounts, the device's state live over a WebSocket, settings an
admin changes, tools run from the device, and a REST API.

    server = await mipfast.dashboard.serve(stack, 8000, {"admin": "…", "user": "…"})
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from typing import Any

from .. import asyncio as maio
from . import auth
from .app import Dashboard
from .auth import Accounts, generate_password
from .http import HttpServer, Limits, Request, Response
from .mqtt import MqttConsole

__all__ = ["serve", "DashboardServer", "Dashboard", "Limits", "generate_password"]


class DashboardServer:
    """The dashboard on a stack port (and optionally an HTTPS port)."""

    def __init__(
        self, dashboard: Dashboard, http: HttpServer, servers: list[Any], mqtt: MqttConsole | None
    ) -> None:
        self.dashboard = dashboard
        self.http = http
        self.servers = servers
        self.mqtt = mqtt

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.servers:
            s.close_clients()
        self.dashboard.watchers.close()
        await asyncio.sleep(0)  # let the cancelled feed loop finish
        if self.mqtt is not None:
            self.mqtt.close()


async def serve(
    stack: Any,
    port: int | None = 8000,
    passwords: dict[str, str] | None = None,
    *,
    https_port: int | None = None,
    tls: _ssl.SSLContext | None = None,
    limits: Limits | None = None,
    refresh: float = 1.0,
    mqtt_url: str | None = None,
    mqtt_topic: str = "mipfast/device",
) -> DashboardServer:
    """Starts serving on the running event loop; ``passwords`` maps "admin" and "user"
    to theirs (an account without one cannot log in). ``port`` None serves HTTPS only.
    ``mqtt_url`` (``mqtt://HOST[:PORT]``) adds the MQTT console on ``mqtt_topic``."""
    dashboard = Dashboard(stack, Accounts(passwords or {}), refresh)
    mqtt = _mqtt_console(dashboard, mqtt_url, mqtt_topic) if mqtt_url else None
    http = HttpServer(dashboard, limits)
    dashboard.watchers.http_clients = lambda: http.clients
    servers = []
    if port is not None:
        servers.append(await maio.start_server(http.serve, stack, port, backlog=128))
    if https_port is not None:
        if tls is None:
            raise ValueError("HTTPS needs a TLS context (a certificate and its key)")
        servers.append(await maio.start_server(http.serve, stack, https_port, ssl=tls, backlog=128))
    if mqtt is not None:
        mqtt.start()
    return DashboardServer(dashboard, http, servers, mqtt)


def _mqtt_console(dashboard: Dashboard, url: str, topic: str) -> MqttConsole:
    loop = asyncio.get_running_loop()
    stack = dashboard.stack

    def status() -> dict[str, Any]:
        s = stack.stats()
        return {"mac": s["mac"], "ip": s["ip"], "uptime": s["uptime"], "counters": s["counters"]}

    def changed() -> None:  # from paho's thread
        loop.call_soon_threadsafe(dashboard.watchers.changed)

    console = MqttConsole(stack, url, topic, status=status, on_change=changed)
    dashboard.extensions["mqtt"] = console.snapshot

    async def publish(req: Request, session: auth.Session) -> Response:
        try:
            body = req.json()
            payload, to = str(body["payload"]), body.get("topic")
            await loop.run_in_executor(None, console.publish, payload, None if to is None else str(to))
        except (ValueError, KeyError, TypeError) as e:
            return Response.error(400, str(e) if not isinstance(e, KeyError) else 'send {"payload": ...}')
        except ConnectionError as e:
            return Response.error(503, str(e))
        return Response.json(console.snapshot())

    async def show(req: Request, session: auth.Session) -> Response:
        return Response.json(console.snapshot())

    dashboard.route("POST", "/api/mqtt/publish", publish)
    dashboard.route("GET", "/api/mqtt", show)
    return console
