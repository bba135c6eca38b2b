"""Genuine ``socket.socket`` objects for stack connections, for code that needs a real one.

A bridge joins a stack ``Connection`` to a kernel socket — one end of a
``socket.socketpair()`` handed to Python, or a real TCP connection to a local
server — and one pump thread moves the bytes both ways, with end-of-stream
passed on in each direction. It costs a copy and a system call per chunk each
way; in return everything that takes a socket works: ``ssl.wrap_socket``,
``select``, ``asyncio``'s ``sock_*`` calls, libraries that check
``isinstance(sock, socket.socket)``.

- :func:`socket_for` — a connected ``socket.socket`` over a stack connection.
- :func:`server_socket` — a listening-socket stand-in for ``socketserver`` servers
  (``server.socket = mipfast.bridge.server_socket(stack, 8000)``).
- :func:`forward` — serve any unmodified server program (uvicorn, hypercorn, aiohttp,
  ``http.server``…) listening on loopback, through a port of the stack.
- :mod:`mipfast.patch` builds the drop-in for unmodified client programs on these.

A reset from the stack's peer reaches the Python side as an abrupt end of stream
(AF_UNIX has no reset); peer names come from the stack connection where the
bridged socket is ours (``getpeername`` on sockets from :func:`socket_for`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
from typing import Any

__all__ = ["socket_for", "server_socket", "forward", "BridgedSocket", "StackServerSocket"]

log = logging.getLogger("mipfast.bridge")

_CHUNK = 256 * 1024


class _Pair:
    """One bridge: the kernel socket ``sock`` and the stack connection ``conn``."""

    def __init__(self, sock: socket.socket, conn: Any) -> None:
        self.sock = sock
        self.conn = conn
        self.up = bytearray()  # from sock, for conn
        self.down = bytearray()  # from conn, for sock
        self.up_eof = False
        self.down_eof = False
        self.up_shut = False
        self.down_shut = False
        self.done = False
        self.sock_fd = sock.fileno()
        self.conn_fd = conn.fileno()
        self.sock_events = 0
        self.conn_events = 0


class _Pump:
    """The one thread that moves bytes for every bridge."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._new: list[_Pair] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.pairs = 0

    def add(self, sock: socket.socket, conn: Any) -> None:
        sock.setblocking(False)
        conn.setblocking(False)
        pair = _Pair(sock, conn)
        with self._lock:
            self._new.append(pair)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mipfast-bridge", daemon=True)
                self._thread.start()
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while True:
            with self._lock:
                new, self._new = self._new, []
            for pair in new:
                self.pairs += 1
                self._update(pair)
            for key, events in self._sel.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                    continue
                pair, side = key.data
                if not pair.done:
                    self._step(pair, side, events)
                if not pair.done:
                    self._update(pair)

    # -- moving bytes --

    def _step(self, pair: _Pair, side: str, events: int) -> None:
        try:
            if side == "sock":
                if events & selectors.EVENT_READ:
                    self._from_sock(pair)
                if events & selectors.EVENT_WRITE:
                    self._to_sock(pair)
            else:
                if events & selectors.EVENT_READ:
                    self._from_conn(pair)
                if events & selectors.EVENT_WRITE:
                    self._to_conn(pair)
        except ConnectionResetError:
            self._finish(pair, reset=True)
        except OSError as e:
            log.debug("bridge %s: %s", pair.conn, e)
            self._finish(pair, reset=e.errno != errno.EBADF)
        if pair.up_eof and pair.down_eof and pair.up_shut and pair.down_shut:
            self._finish(pair, reset=False)

    def _from_sock(self, pair: _Pair) -> None:
        try:
            data = pair.sock.recv(_CHUNK)
        except BlockingIOError:
            return
        if data:
            pair.up += data
            self._to_conn(pair)
        else:
            pair.up_eof = True
            self._to_conn(pair)

    def _to_conn(self, pair: _Pair) -> None:
        while pair.up:
            try:
                n = pair.conn.send(pair.up)
            except BlockingIOError:
                return
            del pair.up[:n]
        if pair.up_eof and not pair.up_shut:
            pair.up_shut = True
            with contextlib.suppress(OSError):
                pair.conn.shutdown(socket.SHUT_WR)

    def _from_conn(self, pair: _Pair) -> None:
        try:
            data = pair.conn.recv(_CHUNK)
        except BlockingIOError:
            return
        if data:
            pair.down += data
            self._to_sock(pair)
        else:
            pair.down_eof = True
            self._to_sock(pair)

    def _to_sock(self, pair: _Pair) -> None:
        while pair.down:
            try:
                n = pair.sock.send(pair.down)
            except BlockingIOError:
                return
            del pair.down[:n]
        if pair.down_eof and not pair.down_shut:
            pair.down_shut = True
            with contextlib.suppress(OSError):
                pair.sock.shutdown(socket.SHUT_WR)

    # -- bookkeeping --

    def _update(self, pair: _Pair) -> None:
        sock_events = (0 if pair.up or pair.up_eof else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if pair.down else 0
        )
        conn_events = (0 if pair.down or pair.down_eof else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if pair.up else 0
        )
        pair.sock_events = self._interest(pair.sock_fd, pair.sock_events, sock_events, (pair, "sock"))
        pair.conn_events = self._interest(pair.conn_fd, pair.conn_events, conn_events, (pair, "conn"))

    def _interest(self, fd: int, old: int, new: int, data: Any) -> int:
        if old == new:
            return new
        if not old:
            self._sel.register(fd, new, data)
        elif not new:
            self._sel.unregister(fd)
        else:
            self._sel.modify(fd, new, data)
        return new

    def _finish(self, pair: _Pair, reset: bool) -> None:
        if pair.done:
            return
        pair.done = True
        self._interest(pair.sock_fd, pair.sock_events, 0, None)
        self._interest(pair.conn_fd, pair.conn_events, 0, None)
        self.pairs -= 1
        if reset:
            # A TCP socket resets its peer; AF_UNIX just ends.
            with contextlib.suppress(OSError):
                pair.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            pair.conn.abort()
        else:
            pair.conn.close()
        pair.sock.close()


_pump = _Pump()


def active_bridges() -> int:
    """Bridges the pump is moving bytes for (for tests and statistics)."""
    return _pump.pairs


def _bridge_end(conn: Any) -> socket.socket:
    """A socketpair joined to ``conn``; returns the end for Python."""
    ours, theirs = socket.socketpair()
    _pump.add(theirs, conn)
    return ours


class BridgedSocket(socket.socket):
    """A genuine ``socket.socket`` whose bytes travel over a stack connection.

    It reports the family AF_INET and the stack connection's addresses; TCP
    options are accepted and applied to the stack connection where they mean
    something (TCP_NODELAY, keepalive), as on a kernel TCP socket.
    """

    _mip_names: tuple[tuple[str, int], tuple[str, int]] | None = None
    _mip_conn: Any = None

    def getpeername(self) -> Any:
        if self._mip_names is not None:
            return self._mip_names[1]
        return super().getpeername()

    def getsockname(self) -> Any:
        if self._mip_names is not None:
            return self._mip_names[0]
        return super().getsockname()

    def setsockopt(self, level: int, optname: int, value: Any, *args: Any) -> None:
        if self._mip_conn is not None and level == socket.IPPROTO_TCP:
            with contextlib.suppress(OSError):
                self._mip_conn.setsockopt(level, optname, value)
            return
        super().setsockopt(level, optname, value, *args)

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        if self._mip_conn is not None and level == socket.IPPROTO_TCP and not args:
            return self._mip_conn.getsockopt(level, optname)
        return super().getsockopt(level, optname, *args)


def socket_for(conn: Any) -> BridgedSocket:
    """A connected ``socket.socket`` for the stack connection ``conn`` (which the bridge now owns).

    The socket keeps ``conn``'s timeout; closing it closes ``conn`` gracefully.
    """
    names = (conn.getsockname(), conn.getpeername())
    timeout = conn.gettimeout()
    end = _bridge_end(conn)
    sock = BridgedSocket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=end.detach())
    sock._mip_names = names
    sock._mip_conn = conn
    sock.settimeout(timeout)
    return sock


def adopt(sock: socket.socket, conn: Any) -> None:
    """Makes the existing socket object ``sock`` the Python end of a bridge to ``conn``
    (its descriptor is replaced in place: ``connect()`` of a patched socket)."""
    end = _bridge_end(conn)
    timeout = sock.gettimeout()
    os.dup2(end.fileno(), sock.fileno())
    end.close()
    sock.settimeout(timeout)  # the new description gets the socket's blocking mode


class StackServerSocket:
    """What ``socketserver`` needs of a listening socket, on a stack port:
    ``accept()`` gives bridged ``socket.socket`` objects, ``fileno()`` the
    listener's readiness descriptor (for ``serve_forever``'s selector)."""

    def __init__(self, stack: Any, port: int, backlog: int = 128) -> None:
        self.listener = stack.listen(port, backlog)
        self.family = socket.AF_INET
        self.type = socket.SOCK_STREAM

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, peer = self.listener.accept(0)  # socketserver accepts when the selector says so
        return socket_for(conn), peer

    def fileno(self) -> int:
        return self.listener.fileno()

    def getsockname(self) -> tuple[str, int]:
        return self.listener.getsockname()

    def close(self) -> None:
        self.listener.close()

    def listen(self, backlog: int = 128) -> None:
        pass  # listening already

    def setsockopt(self, *args: Any) -> None:
        pass


def server_socket(stack: Any, port: int, backlog: int = 128) -> StackServerSocket:
    """A listening stand-in for ``socketserver`` servers: set it as ``server.socket``."""
    return StackServerSocket(stack, port, backlog)


class Forwarder:
    """Accepts on a stack port and joins each connection to ``target`` on the host's
    loopback, where an unmodified server listens. Stop with ``close()``."""

    def __init__(self, stack: Any, port: int, target: tuple[str, int], backlog: int = 128) -> None:
        self.listener = stack.listen(port, backlog)
        self.target = target
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mipfast-forward", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.listener.port

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _peer = self.listener.accept(0.2)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError as e:
                log.warning("forward to %s:%s failed: %s", *self.target, e)
                conn.abort()
                continue
            _pump.add(upstream, conn)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self._thread.join(2)

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def forward(stack: Any, port: int, target: tuple[str, int], backlog: int = 128) -> Forwarder:
    """Serve the program listening at ``target`` (e.g. ``("127.0.0.1", 8001)``) on the stack's ``port``."""
    return Forwarder(stack, port, target, backlog)
