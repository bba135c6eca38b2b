"""``/api/watch``: a WebSocket per browser (wsproto doing the protocol after the HTTP
handshake), fed by one loop that sends every watcher a snapshot once per refresh period,
and at once when the device's state changes (a connection opens or closes, the address or
the ARP table changes, a setting changes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from .http import Upgrade

if TYPE_CHECKING:
    from .app import Dashboard
    from .auth import Session

log = logging.getLogger("mipfast.dashboard")

#: How often the loop looks for changes between periodic pushes.
CHANGE_POLL = 0.1


class _Watcher:
    def __init__(self, writer: asyncio.StreamWriter, ws: Connection, session: Session) -> None:
        self.writer = writer
        self.ws = ws
        self.session = session
        self.pending: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)

    def offer(self, frame: bytes) -> None:
        """A watcher that cannot keep up skips snapshots rather than piling them up."""
        if self.pending.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.pending.get_nowait()
        self.pending.put_nowait(frame)


class Watchers:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self._watchers: set[_Watcher] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.http_clients: Callable[[], int] = lambda: 0  # set by the server: connections it serves

    def __len__(self) -> int:
        return len(self._watchers)

    def server_clients(self) -> int:
        return self.http_clients()

    def close(self) -> None:
        """Ends every live feed."""
        for w in list(self._watchers):
            w.writer.close()
        self._watchers.clear()
        if self._loop_task is not None:
            self._loop_task.cancel()

    def changed(self) -> None:
        """Push to every watcher now (a setting changed)."""
        self._changed.set()

    def upgrade(self, key: str, session: Session) -> Upgrade:
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode("ascii")),
        ]

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
            await self._serve(reader, writer, rest, session)

        return Upgrade(headers, run)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes, session: Session
    ) -> None:
        ws = Connection(ConnectionType.SERVER)
        watcher = _Watcher(writer, ws, session)
        self._watchers.add(watcher)
        self._ensure_loop()
        watcher.offer(self._frame(ws))
        sender = asyncio.ensure_future(self._send(watcher))
        try:
            if rest:
                ws.receive_data(rest)
                if not self._answer(watcher):
                    return
            while True:
                data = await reader.read(65536)
                ws.receive_data(data or None)
                if not data or not self._answer(watcher):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._watchers.discard(watcher)
            sender.cancel()
            writer.close()

    def _answer(self, w: _Watcher) -> bool:
        """Handles what the browser sent; False once the WebSocket is closing."""
        for event in w.ws.events():
            if isinstance(event, Ping):
                w.writer.write(w.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError):  # already closing
                    w.writer.write(w.ws.send(event.response()))
                return False
            elif isinstance(event, Message) and self.dashboard.sessions.get(w.session.token) is None:
                return False  # logged out meanwhile
        return self.dashboard.sessions.get(w.session.token) is not None

    async def _send(self, w: _Watcher) -> None:
        try:
            while True:
                frame = await w.pending.get()
                if frame is None:
                    return
                w.writer.write(frame)
                await w.writer.drain()
        except (ConnectionError, OSError):
            pass

    def _frame(self, ws: Connection, snapshot: str | None = None) -> bytes:
        return ws.send(TextMessage(data=snapshot or json.dumps(self.dashboard.snapshot())))

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self._run())

    def _fingerprint(self) -> Any:
        stack = self.dashboard.stack
        tcp = tuple(
            (c["state"], tuple(c["local"]), c["remote"] and tuple(c["remote"])) for c in stack.connections()
        )
        arp = tuple((e["ip"], e["mac"]) for e in stack.arp_table())
        udp = tuple(tuple(u["local"]) for u in stack.udp_sockets())
        return (stack.ip, tcp, arp, udp)

    async def _run(self) -> None:
        last_push = 0.0
        last_seen = None
        while self._watchers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), CHANGE_POLL)
            forced = self._changed.is_set()
            self._changed.clear()
            try:
                seen = self._fingerprint()
                due = time.monotonic() - last_push >= self.dashboard.refresh
                if forced or due or seen != last_seen:
                    last_seen, last_push = seen, time.monotonic()
                    text = json.dumps(self.dashboard.snapshot())
                    for w in list(self._watchers):
                        try:
                            w.offer(self._frame(w.ws, text))
                        except LocalProtocolError:  # the WebSocket closed under us
                            self._watchers.discard(w)
            except OSError as e:  # the stack closed
                log.debug("watch: %s", e)
                for w in list(self._watchers):
                    w.writer.close()
                self._watchers.clear()
                return
