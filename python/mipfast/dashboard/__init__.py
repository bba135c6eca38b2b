"""The device dashboard, served by the stack itself (``python -m mipfast`` starts it on port
8000): a login with two accounts, the device's state live over a WebSocket, settings an
admin changes, tools run from the device, and a REST API.

    server = await mipfast.dashboard.serve(stack, 8000, {"admin": "…", "user": "…"})
    ...
    await server.close()
"""

from __future__ import annotations

import ssl as _ssl
from typing import Any

from .. import asyncio as maio
from .app import Dashboard
from .auth import Accounts, generate_password
from .http import HttpServer, Limits

__all__ = ["serve", "DashboardServer", "Dashboard", "Limits", "generate_password"]


class DashboardServer:
    """The dashboard on a stack port (and optionally an HTTPS port)."""

    def __init__(self, dashboard: Dashboard, http: HttpServer, servers: list[Any]) -> None:
        self.dashboard = dashboard
        self.http = http
        self.servers = servers

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.servers:
            s.close_clients()
        self.dashboard.watchers.close()


async def serve(
    stack: Any,
    port: int = 8000,
    passwords: dict[str, str] | None = None,
    *,
    https_port: int | None = None,
    tls: _ssl.SSLContext | None = None,
    limits: Limits | None = None,
    refresh: float = 1.0,
) -> DashboardServer:
    """Starts serving on the running event loop; ``passwords`` maps "admin" and "user"
    to theirs (an account without one cannot log in). ``port`` None serves HTTPS only."""
    dashboard = Dashboard(stack, Accounts(passwords or {}), refresh)
    http = HttpServer(dashboard, limits)
    dashboard.watchers.http_clients = lambda: http.clients
    servers = []
    if port is not None:
        servers.append(await maio.start_server(http.serve, stack, port, backlog=128))
    if https_port is not None:
        if tls is None:
            raise ValueError("HTTPS needs a TLS context (a certificate and its key)")
        servers.append(await maio.start_server(http.serve, stack, https_port, ssl=tls, backlog=128))
    return DashboardServer(dashboard, http, servers)
