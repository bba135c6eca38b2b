"""mipfast: a TCP/IP stack in user space, over pcap, driven from Python.

import mipfast
with mipfast.Stack("mip0") as stack:      # DHCP; or ip="10.77.0.2/24", gateway="10.77.0.1"
    stack.wait_ready(timeout=5)
    print(stack.ip, stack.gateway, stack.dns)
    with stack.connect(("10.77.0.1", 80), timeout=3) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print(conn.recv(65536))
    print(stack.resolve("example.com"), stack.ping("10.77.0.1", count=3))
    with stack.udp() as sock:
        sock.sendto(b"hello", ("10.77.0.1", 7))
"""

from __future__ import annotations

import atexit
import socket
import ssl as _ssl
import weakref
from importlib import metadata as _metadata

from . import _native
from ._native import DEFAULT_MAC, Connection, Listener, UdpSocket, interfaces, reset_logging
from .tls import TlsConnection

try:
    __version__ = _metadata.version("mipfast")
except _metadata.PackageNotFoundError:  # run from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Stack",
    "Connection",
    "Listener",
    "TlsConnection",
    "TlsListener",
    "UdpSocket",
    "interfaces",
    "reset_logging",
    "DEFAULT_MAC",
]

_open_stacks: weakref.WeakSet[Stack] = weakref.WeakSet()


class Stack(_native.Stack):
    """A TCP/IP stack that owns one network interface through pcap.

    ``ip=None`` asks DHCP for an address; ``ip="10.77.0.2/24"`` sets it statically.
    Use it as a context manager to run a driver thread, or call ``poll()`` in a loop.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _open_stacks.add(self)

    def connect(  # type: ignore[override]
        self,
        address: tuple[str | bytes | bytearray, int],
        timeout: float | None = None,
        source_port: int | None = None,
        *,
        wait: bool = True,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Connection | TlsConnection:
        """Open a TCP connection; with ``ssl=`` a context, a TLS session over it
        (``server_hostname`` defaults to the host, as ``asyncio.open_connection``).
        ``wait=False`` returns at once, the handshake in progress (see ``_native.Stack.connect``)."""
        if ssl is not None and not wait:
            raise ValueError("a TLS handshake needs the connection: wait=False excludes ssl")
        conn = super().connect(address, timeout, source_port, wait)
        if ssl is None:
            return conn
        try:
            host = address[0]
            if isinstance(host, (bytes, bytearray)):
                host = bytes(host).decode("ascii", "replace")
            return TlsConnection(conn, ssl, server_hostname=server_hostname or host)
        except BaseException:
            conn.close()
            raise

    def listen(  # type: ignore[override]
        self,
        port: int,
        backlog: int = 128,
        family: int = socket.AF_UNSPEC,
        *,
        ssl: _ssl.SSLContext | None = None,
    ) -> Listener | TlsListener:
        """Listen on ``port`` (0: a free one) for peers of both families (``AF_UNSPEC``), or of
        ``family`` alone; with ``ssl=`` accepted connections are TLS servers."""
        listener = super().listen(port, backlog, family)
        return listener if ssl is None else TlsListener(listener, ssl)


class TlsListener:
    """A ``Listener`` whose ``accept()`` returns TLS sessions (server side, handshake done)."""

    def __init__(self, listener: Listener, context: _ssl.SSLContext) -> None:
        self.listener = listener
        self.context = context

    def accept(self, timeout: float | None = None) -> tuple[TlsConnection, tuple[str, int]]:
        conn, peer = self.listener.accept(timeout)
        conn.settimeout(timeout)
        try:
            tls = TlsConnection(conn, self.context, server_side=True)
        except BaseException:
            conn.close()
            raise
        conn.settimeout(None)
        return tls, peer

    def __getattr__(self, name: str) -> object:
        return getattr(self.listener, name)

    def __enter__(self) -> TlsListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


@atexit.register
def _close_all() -> None:
    # Driver threads log through Python; stop them before the interpreter goes away.
    for stack in list(_open_stacks):
        stack.close()
