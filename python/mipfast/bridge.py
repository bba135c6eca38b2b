"""Genuine ``socket.socket`` objects for stack connections, for code that needs a real one.

A bridge joins a stack ``Connection`` to a kernel socket — one end of a
``socket.socketpair()`` handed to Python, or a real TCP connection to a local
server — and the stack's driver thread moves the bytes both ways, in Rust and
in the same round that received or freed them (no Python, no GIL), with
end-of-stream passed on in each direction. It costs a copy and a system call
per chunk each way; in return everything that takes a socket works: ``ssl.wrap_socket``,
``select``, ``asyncio``'s ``sock_*`` calls, libraries that check
``isinstance(sock, socket.socket)``.

- :func:`socket_for` — a connected ``socket.socket`` over a stack connection.
- :func:`server_socket` — a listening-socket stand-in for ``socketserver`` servers
  (``server.socket = mipfast.bridge.server_socket(stack, 8000)``).
- :func:`forward` — serve any unmodified server program (uvicorn, hypercorn, aiohttp,
  ``http.server``…) listening on loopback, through a port of the stack.
- :mod:`mipfast.patch` builds the drop-in for unmodified programs, clients and servers, on these.

A reset from the stack's peer (or a connection that timed out) reaches sockets
from :func:`socket_for` as the kernel's would: the first read after it raises
``ConnectionResetError`` (``TimeoutError``), later reads find the end of stream.
AF_UNIX itself has no reset, so a socket adopted by :mod:`mipfast.patch` sees an
abrupt end of stream. Peer names come from the stack connection where the bridged
socket is ours (``getpeername`` on sockets from :func:`socket_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import selectors
import socket
import struct
import threading
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["socket_for", "server_socket", "forward", "BridgedSocket", "StackServerSocket"]

log = logging.getLogger("mipfast.bridge")


def active_bridges(stack: Any) -> int:
    """Bridges of ``stack`` still moving bytes (for tests and statistics)."""
    return int(stack.tcp_info["bridges"])


def _join(sock: socket.socket, conn: Any, hold: int = 0) -> None:
    """Hands ``conn`` and ``sock`` to the stack's driver, which moves the bytes
    between them (after dropping ``sock``'s first ``hold`` bytes); our descriptor
    for ``sock`` is closed (the driver holds its own)."""
    try:
        conn.bridge(sock.fileno(), hold)
    finally:
        sock.close()


def _hold_writability(end: socket.socket) -> int:
    """Writes into ``end`` until it no longer shows writable; returns how many bytes.
    The bridge drops them once its connection can send, and ``end`` turns writable
    then, as a connecting kernel socket does when its handshake is over."""
    end.setblocking(False)
    held = 0
    while _writable(end):
        try:
            held += end.send(_HOLD)
        except BlockingIOError:
            break
    return held


#: One write of this holds a socketpair end at Linux's default buffer size (writable while
#: under a quarter of it is queued); the loop above writes more where one is not enough.
_HOLD = bytes(64 << 10)


def _writable(sock: socket.socket) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(0))
    return bool(select.select([], [sock], [], 0)[1])


def held_end(conn: Any) -> socket.socket:
    """The Python end of a bridge to ``conn``, whose handshake is under way: it turns
    writable when the handshake is over, or reads end of stream and turns writable if
    it failed (``conn._bridge_failure()`` then tells why). A non-blocking ``connect()``
    gives its socket this descriptor at once, so that the one an event loop registers
    is the one that carries the connection."""
    ours, theirs = socket.socketpair()
    try:
        _join(theirs, conn, _hold_writability(ours))
    except BaseException:
        ours.close()
        raise
    return ours


def _raw_fileno(sock: socket.socket) -> int:
    """``sock``'s descriptor as it is, not a bridged socket's ``fileno()``, which makes its
    bridge. (``socket.socket`` may be the patch's class here: the C type's own method.)"""
    return int(socket.SocketType.fileno(sock))


#: Socket-level options a stack connection answers for; every TCP-level one goes to it too.
_STACK_SOCKET_OPTIONS = {socket.SO_KEEPALIVE, socket.SO_RCVBUF, socket.SO_SNDBUF, socket.SO_LINGER}


def is_stack_option(level: int, optname: int) -> bool:
    """Whether an option of a bridged TCP socket is the stack connection's, not its descriptor's."""
    return level == socket.IPPROTO_TCP or (level == socket.SOL_SOCKET and optname in _STACK_SOCKET_OPTIONS)


def _lingers_for_no_time(conn: Any) -> bool:
    """Whether ``conn`` has SO_LINGER on with no time: its close is a reset."""
    try:
        return struct.unpack("ii", conn.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
    except OSError:  # the connection is over already
        return False


class BridgedSocket(socket.socket):
    """A genuine ``socket.socket`` whose bytes travel over a stack connection.

    It reports the family AF_INET and the stack connection's addresses; TCP
    options, keepalive and the buffer sizes are the stack connection's
    (``is_stack_option``); TCP options it does not know are accepted and
    ignored, as the kernel ignores a hint it cannot use.
    """

    _mip_names: tuple[Any, Any] | None = None
    _mip_conn: Any = None
    _mip_failure_told = False
    #: SO_LINGER was set: its close asks whether to end with a reset.
    _mip_linger_set = False
    #: Plain calls may skip the descriptor (see ``_mip_direct``): a client's socket. A server's
    #: keeps its bridge: the driver then runs the stack beside the server's threads, and
    #: coalesces what a handler writes in pieces (headers, then a body) as it reads them.
    _mip_direct_ok = False
    #: A blocking client's connection whose bridge is not made yet: its descriptor is still
    #: the unconnected kernel socket ``socket()`` made, and the plain calls go to the
    #: connection itself. Anything that needs the descriptor (``fileno()``: ``select``, TLS,
    #: ``os.read``; flags, ``recvmsg``, a non-blocking mode, a fork) makes the bridge first
    #: (``_mip_join``), which hands the descriptor whatever the connection holds unread.
    _mip_unjoined: Any = None

    def _mip_take_unjoined(self) -> Any:
        """The connection without its bridge yet, if any, no longer this socket's to read
        and write directly (it is joined, closed or handed over next)."""
        conn, self._mip_unjoined = self._mip_unjoined, None
        if conn is not None:
            _UNJOINED.discard(self)
        return conn

    def _mip_join(self) -> None:
        """Makes this socket's bridge, if it has none yet (see ``_mip_unjoined``)."""
        conn = self._mip_take_unjoined()
        if conn is not None:
            adopt(self, conn)

    def fileno(self) -> int:
        self._mip_join()
        return super().fileno()

    def detach(self) -> int:
        self._mip_join()
        return super().detach()

    def __repr__(self) -> str:
        if self._mip_unjoined is None:
            return super().__repr__()
        # (socket.socket's asks fileno(), which would make the bridge: not for a repr, nor for
        # the ResourceWarning of a socket collected unclosed.)
        kind, fd = type(self), _raw_fileno(self)
        return (
            f"<{kind.__module__}.{kind.__qualname__} fd={fd}, family={self.family!s}, type={self.type!s}, "
            f"proto={self.proto}, laddr={self.getsockname()}, raddr={self.getpeername()}>"
        )

    def settimeout(self, value: float | None) -> None:
        if value == 0:
            self._mip_join()  # a non-blocking socket's event loop watches its descriptor
        super().settimeout(value)
        if self._mip_unjoined is not None:
            self._mip_unjoined.settimeout(value)

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def _real_close(self, _ss: Any = socket.socket) -> None:
        conn = self._mip_take_unjoined()
        if conn is not None:
            # As a kernel socket's close: a FIN, or a reset over unread data or with SO_LINGER
            # set to no time (a time: the call waits for the FIN's acknowledgement).
            conn.close()
        elif self._mip_conn is not None and self._mip_linger_set and _lingers_for_no_time(self._mip_conn):
            self._mip_conn.abort()  # the bridge ends with a reset, not the FIN its end of stream sends
        super()._real_close()  # type: ignore[misc]

    def _end_of_stream(self) -> None:
        """At end of stream: if the stack connection failed (a reset, a timeout),
        raise that once, as a kernel TCP socket's first read after a reset does."""
        if self._mip_conn is None or self._mip_failure_told:
            return
        code = self._mip_conn._bridge_failure()
        if code:
            self._mip_failure_told = True
            raise OSError(code, os.strerror(code))  # ConnectionResetError for ECONNRESET

    def _mip_direct(self, flags: int) -> Any:
        """The stack connection, where this call may skip the descriptor: a plain call
        (no flags) on a socket that blocks or has a timeout. The connection is then
        read and written in this thread, without the driver's hop through the socketpair,
        whenever the descriptor holds nothing that must come first (the stack decides,
        and says no otherwise: the call then goes through the descriptor, as always).
        A non-blocking socket belongs to an event loop, which watches the descriptor."""
        if not self._mip_direct_ok or flags or self._mip_conn is None:
            return None
        if self.gettimeout() == 0.0 or self.fileno() < 0:
            return None  # (closed: the descriptor's call raises EBADF)
        return self._mip_conn

    def _mip_unjoined_for(self, flags: int) -> Any:
        """The connection, where a plain call (no flags) on a socket without its bridge yet
        goes straight to it; None where the call needs the descriptor (made so here)."""
        if self._mip_unjoined is not None and flags:
            self._mip_join()
        return self._mip_unjoined

    def send(self, data: Any, flags: int = 0) -> int:
        unjoined = self._mip_unjoined_for(flags)
        if unjoined is not None:
            return int(unjoined.send(data))
        conn = self._mip_direct(flags)
        if conn is not None:
            sent, n = conn._direct_send(data, False, self.gettimeout())
            if sent:
                return int(n)
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        unjoined = self._mip_unjoined_for(flags)
        if unjoined is not None:
            return unjoined.sendall(data)  # type: ignore[no-any-return]
        conn = self._mip_direct(flags)
        if conn is not None and conn._direct_send(data, True, self.gettimeout())[0]:
            return None
        return super().sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        unjoined = self._mip_unjoined_for(flags)
        if unjoined is not None:
            early = unjoined._early_recv(bufsize)
            if early is not None:  # (else another thread made the bridge meanwhile)
                return early  # type: ignore[no-any-return]
        conn = self._mip_direct(flags)
        if conn is not None:
            direct = conn._direct_recv(self.fileno(), bufsize, self.gettimeout())
            if direct is not None:
                return direct  # type: ignore[no-any-return]
        data = super().recv(bufsize, flags)
        if not data and bufsize:
            self._end_of_stream()
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        unjoined = self._mip_unjoined_for(flags)
        if unjoined is not None:
            early = unjoined._early_recv_into(buffer, nbytes)
            if early is not None:  # (else another thread made the bridge meanwhile)
                return int(early)
        conn = self._mip_direct(flags)
        if conn is not None:
            direct = conn._direct_recv_into(self.fileno(), buffer, nbytes, self.gettimeout())
            if direct is not None:
                return int(direct)
        n = super().recv_into(buffer, nbytes, flags)
        if not n and (nbytes or memoryview(buffer).nbytes):
            self._end_of_stream()
        return n

    def sendto(self, data: Any, *args: Any) -> int:
        self._mip_join()
        return super().sendto(data, *args)

    def sendmsg(self, *args: Any) -> int:
        self._mip_join()
        return super().sendmsg(*args)

    def recvmsg(self, *args: Any) -> Any:
        self._mip_join()
        return super().recvmsg(*args)

    def recvmsg_into(self, *args: Any) -> Any:
        self._mip_join()
        return super().recvmsg_into(*args)

    def recvfrom(self, bufsize: int, flags: int = 0) -> Any:
        self._mip_join()
        data, address = super().recvfrom(bufsize, flags)
        if not data and bufsize:
            self._end_of_stream()
        return data, address

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> Any:
        self._mip_join()
        n, address = super().recvfrom_into(buffer, nbytes, flags)
        if not n and (nbytes or memoryview(buffer).nbytes):
            self._end_of_stream()
        return n, address

    def shutdown(self, how: int) -> None:
        if self._mip_unjoined is not None:
            return self._mip_unjoined.shutdown(how)  # type: ignore[no-any-return]
        super().shutdown(how)
        if how != socket.SHUT_WR and self._mip_direct_ok and self._mip_conn is not None:
            self._mip_conn._shutdown_read_bridged()  # a direct read waiting elsewhere returns

    def getpeername(self) -> Any:
        if self._mip_names is not None:
            return self._mip_names[1]
        return super().getpeername()

    def getsockname(self) -> Any:
        if self._mip_names is not None:
            return self._mip_names[0]
        return super().getsockname()

    def setsockopt(self, level: int, optname: int, value: Any, *args: Any) -> None:
        if (level, optname) == (socket.SOL_SOCKET, socket.SO_LINGER):
            self._mip_linger_set = True
        if self._mip_conn is not None and is_stack_option(level, optname):
            with contextlib.suppress(OSError):  # one the stack does not know: as if taken
                self._mip_conn.setsockopt(level, optname, value)
            return
        super().setsockopt(level, optname, value, *args)

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        if self._mip_conn is not None and is_stack_option(level, optname) and len(args) <= 1:
            return self._mip_conn.getsockopt(level, optname, *args)
        return super().getsockopt(level, optname, *args)

    def dup(self) -> Any:
        twin = super().dup()
        if isinstance(twin, BridgedSocket):
            twin._mip_names, twin._mip_conn = self._mip_names, self._mip_conn
            twin._mip_direct_ok = self._mip_direct_ok
        return twin

    def _mip_answers(self, level: int, optname: int) -> bool:
        """Whether the stack, not the descriptor, answers for this option."""
        return self._mip_conn is not None and is_stack_option(level, optname)

    def _mip_release(self) -> tuple[Any, bytes] | None:
        """Ends this socket's bridge, closes the socket and hands its connection over,
        with what the bridge had received for it and this socket had not yet read (for
        a transport of ours to take over). None where that cannot be done whole: the
        socket goes on as it was."""
        conn = self._mip_conn
        if self._mip_take_unjoined() is not None:  # no bridge: the connection goes on as it is
            self._mip_conn = None
            self.close()
            return conn, b""
        pending = None if conn is None else conn._unbridge()
        if pending is None:
            return None
        # The bridge has let go of its end, so what it wrote ends in end of stream.
        received = bytearray()
        socket.socket.setblocking(self, False)
        with contextlib.suppress(BlockingIOError):
            while chunk := socket.socket.recv(self, 1 << 16):
                received += chunk
        self._mip_conn = None
        self.close()
        return conn, bytes(received) + pending

    def _mip_listening(self) -> bool:
        """Whether this is a listening socket on the stack (see :mod:`mipfast._routed`)."""
        return False

    def _mip_accept(self, timeout: float | None) -> tuple[socket.socket, Any]:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # not listening


def socket_for(conn: Any, family: int | None = None, server: bool = False) -> BridgedSocket:
    """A connected ``socket.socket`` for the stack connection ``conn`` (which the bridge now owns).

    The socket keeps ``conn``'s timeout; closing it closes ``conn`` gracefully. Its family is
    the connection's, unless ``family`` says otherwise: ``AF_INET6`` for an IPv4 connection
    makes it a dual-stack socket's, its addresses IPv4-mapped ones.
    A client's socket (``server=False``) reads and writes its connection directly where it
    can (see ``BridgedSocket._mip_direct``); a server's goes through its bridge.
    """
    names = (conn.getsockname(), conn.getpeername())
    family = conn.family if family is None else family
    if family == socket.AF_INET6:
        names = (ipv4_mapped(names[0]), ipv4_mapped(names[1]))
    timeout = conn.gettimeout()
    sock = BridgedSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=conn.bridge_end())
    sock._mip_names = names
    sock._mip_conn = conn
    sock._mip_direct_ok = not server
    sock.settimeout(timeout)
    return sock


def ipv4_mapped(address: tuple[Any, ...]) -> tuple[str, int, int, int]:
    """An address as a dual-stack (AF_INET6) socket names it: an IPv4 one mapped, an IPv6
    one (already four items) as it is."""
    if len(address) == 4:
        return (address[0], address[1], address[2], address[3])
    return (f"::ffff:{address[0]}", address[1], 0, 0)


def replace_descriptor(sock: socket.socket, fd: int) -> None:
    """Makes ``sock``'s descriptor refer to what ``fd`` refers to (``dup2``), in its blocking
    mode (see ``_registration_kept`` for an event loop that watches it)."""
    with _registration_kept(sock) as fd_here:
        timeout = sock.gettimeout()
        os.dup2(fd, fd_here, inheritable=False)  # as the kernel socket it stands for
        socket.socket.settimeout(sock, timeout)  # the new description gets the socket's blocking mode


@contextlib.contextmanager
def _registration_kept(sock: socket.socket) -> Iterator[int]:
    """Around a change of what ``sock``'s descriptor (given) refers to: a selector-based asyncio
    loop running in this thread that watches ``sock`` goes on watching it. Its registration is
    taken off the old description first (epoll and kqueue keep one for as long as the old
    description lives elsewhere, and would report it for this descriptor), then made again,
    same events and callbacks."""
    fd_here = _raw_fileno(sock)  # (not a bridged socket's own, which makes its bridge)
    selector = _running_selector()
    key = None
    if selector is not None:
        with contextlib.suppress(KeyError, ValueError):
            key = selector.get_key(fd_here)
            selector.unregister(fd_here)
    try:
        yield fd_here
    finally:
        if selector is not None and key is not None:
            selector.register(fd_here, key.events, key.data)


def _running_selector() -> selectors.BaseSelector | None:
    """The selector of the asyncio loop running in this thread, if it has one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    selector = getattr(loop, "_selector", None)
    return selector if isinstance(selector, selectors.BaseSelector) else None


#: Sockets without their bridge yet (``BridgedSocket._mip_unjoined``): a fork makes theirs
#: first, so that the child, which cannot drive this process's stack, has a descriptor.
_UNJOINED: weakref.WeakSet[BridgedSocket] = weakref.WeakSet()


def _join_before_fork() -> None:
    for sock in list(_UNJOINED):
        with contextlib.suppress(OSError):
            sock._mip_join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_join_before_fork)


def adopt_unjoined(sock: BridgedSocket, conn: Any) -> None:
    """Makes the blocking socket ``sock`` the user of the connected ``conn``, its bridge
    made only when something needs the descriptor (see ``BridgedSocket._mip_unjoined``).
    In a thread that runs an event loop the bridge is made at once (see ``adopt``)."""
    if _running_selector() is not None:
        adopt(sock, conn)
        return
    _leave_unjoined(sock, conn)


def _leave_unjoined(sock: BridgedSocket, conn: Any) -> None:
    sock._mip_unjoined = conn
    _UNJOINED.add(sock)


def adopt_unwatched(sock: BridgedSocket, conn: Any) -> None:
    """Makes the non-blocking socket ``sock`` the user of the connected ``conn`` (an event loop's
    ``sock_connect``), its bridge made only when something needs the descriptor, unless the loop
    running here watches the descriptor already: that watch must see the connection."""
    selector = _running_selector()
    watched = False
    if selector is not None:
        with contextlib.suppress(KeyError, ValueError):
            watched = selector.get_key(_raw_fileno(sock)) is not None
    if watched:
        adopt(sock, conn)
        return
    _leave_unjoined(sock, conn)


def adopt(sock: socket.socket, conn: Any) -> None:
    """Makes the existing socket object ``sock`` the Python end of a bridge to ``conn``
    (its descriptor is replaced in place: ``connect()`` of a patched socket)."""
    nonblocking = sock.gettimeout() is not None
    if _running_selector() is None:  # no event loop in this thread: nothing to keep
        conn.bridge_onto(_raw_fileno(sock), nonblocking)
        return
    with _registration_kept(sock) as fd_here:
        conn.bridge_onto(fd_here, nonblocking)


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
        return socket_for(conn, server=True), peer

    def fileno(self) -> int:
        fd: int = self.listener.fileno()
        return fd

    def getsockname(self) -> tuple[str, int]:
        name: tuple[str, int] = self.listener.getsockname()
        return name

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
        port: int = self.listener.port
        return port

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _peer = self.listener.accept(0.2)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError as e:
                log.warning("forward to %s:%s failed: %s", *self.target, e)
                conn.abort()
                continue
            try:
                _join(upstream, conn)
            except OSError as e:
                log.warning("bridge failed: %s", e)
                return

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
