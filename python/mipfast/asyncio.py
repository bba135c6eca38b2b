"""asyncio over the stack: streams, transports and servers on mipfast connections.

The stdlib's own types come back: ``open_connection`` returns an
``asyncio.StreamReader`` and ``asyncio.StreamWriter``; ``create_connection`` takes a
protocol factory and returns ``(transport, protocol)``; TLS is the stdlib's
(``loop.start_tls`` over our transport). Our transport waits on the connection's
readiness descriptor with ``loop.add_reader``/``add_writer``, so it runs on any
loop that has them (the default selector loop on Linux and macOS, uvloop).

    async def main(stack):
        reader, writer = await mipfast.asyncio.open_connection(stack, "10.77.0.1", 80)
        writer.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
        print(await reader.read())

A name lookup runs in the loop's default executor, so it never blocks the loop; the
handshake and everything after are non-blocking I/O.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import ipaddress
import itertools
import os
import socket
import ssl as _ssl
import weakref
from typing import Any, Callable

__all__ = [
    "open_connection",
    "start_tls",
    "start_server",
    "create_connection",
    "create_server",
    "Server",
    "StackTransport",
]

_READ_SIZE = 256 * 1024
_DEFAULT_LIMIT = 2**16


#: How long a loop goes on polling a stack's device after the last transport or server on it
#: closed: a client that opens a connection per request would otherwise stop and start the
#: watch each time (four selector registrations, a ready set made and dropped, the driver
#: thread told twice: about 50 µs of a 300 µs connection on this project's test machine).
_LINGER = 0.5


class _DeviceWatch:
    """A loop polls a stack's device itself while it has transports or servers on
    it: a frame wakes the loop, which runs the stack's round, rather than waking the
    driver thread that would then wake the loop through a readiness descriptor (one
    thread hop per reply instead of two). The driver thread steps in only for timers
    and for frames a busy loop leaves waiting (see the README).

    The round also says which of the loop's sockets it made ready (the stack keeps
    the loop's ready set, an epoll of its own), and their callbacks run at once: no
    descriptor per socket is flipped and selected. What turns ready otherwise (a
    timer, a call from another thread) makes the set's own descriptor readable.

    Once its last user leaves, the watch lingers for :data:`_LINGER` before it
    stops. It holds its loop only weakly (no handle, no callback of the loop's
    either), and the loop holds it through its reader registrations: a loop that
    closes (its selector with it) lets go of the watch, lingering or with
    transports left open, and its poller, dropped, gives the device back to the
    driver."""

    def __init__(self, loop: asyncio.AbstractEventLoop, poller: Any, fd: int) -> None:
        self._loop_ref = weakref.ref(loop)
        self.poller, self.fd, self.users = poller, fd, 0
        self.ready_fd = -1
        self.callbacks: dict[int, tuple[Callable[[], None] | None, Callable[[], None] | None]] = {}
        self._tokens = itertools.count(1)
        # When the last user left, and whether a timer will look at it.
        self._left_at = 0.0
        self._linger_armed = False
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop_ref()

    def start(self) -> None:
        loop = self.loop
        assert loop is not None  # started by a callback of the loop
        self.poller.polling(True)
        self.ready_fd = self.poller.ready_fileno()
        try:
            loop.add_reader(self.fd, self.device_ready)
            loop.add_reader(self.ready_fd, self.set_ready)
        except BaseException:
            self.stop()
            raise

    def enter(self) -> None:
        """One more transport or server waits through this watch."""
        self.users += 1

    def leave(self) -> None:
        """One less; after the last one the watch lingers."""
        self.users -= 1
        if self.users > 0 or self._stopped:
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            self.stop()
            return
        self._left_at = loop.time()
        if not self._linger_armed:
            self._linger_armed = True
            loop.call_later(_LINGER, _linger_over, weakref.ref(self))

    def token(self) -> int:
        return next(self._tokens)

    def wait(
        self, sock: Any, token: int, reader: Callable[[], None] | None, writer: Callable[[], None] | None
    ) -> None:
        """`sock` (under `token`) calls `reader`/`writer` when ready for it; None: not."""
        if reader is None and writer is None:
            self.callbacks.pop(token, None)
        else:
            self.callbacks[token] = (reader, writer)
        self.poller.interest(sock, token, reader is not None, writer is not None)

    def device_ready(self) -> None:
        try:
            events = self.poller.round()
        except OSError:  # the stack closed, and its sockets were told
            self.stop()
            return
        self._dispatch(events)

    def set_ready(self) -> None:
        self._dispatch(self.poller.collect())
        if self.poller.fileno() < 0:  # the stack closed (which signals the set): told all, done
            self.stop()

    def _dispatch(self, events: list[tuple[int, bool, bool]]) -> None:
        for token, readable, writable in events:
            if readable:
                self._run(token, 0)
            if writable:
                self._run(token, 1)  # looked up again: the reader may have changed it

    def _run(self, token: int, which: int) -> None:
        callbacks = self.callbacks.get(token)
        callback = callbacks[which] if callbacks is not None else None
        if callback is None:
            return
        try:
            callback()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            message = "mipfast readiness callback failed"
            loop = self.loop
            if loop is not None:
                loop.call_exception_handler({"message": message, "exception": exc})

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop = self.loop
        if loop is not None:
            per_loop = _device_watches.get(loop)
            if per_loop is not None and per_loop.get(self.fd) is self:
                del per_loop[self.fd]
            if not loop.is_closed():
                for fd in (self.fd, self.ready_fd):
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        loop.remove_reader(fd)
        self.poller.polling(False)


def _linger_over(watch: weakref.ref[_DeviceWatch]) -> None:
    """The timer of a lingering watch: stops it if no user came back since, else looks
    again when the linger of the last one to leave ends."""
    w = watch()
    loop = w.loop if w is not None else None
    if w is None or loop is None or w._stopped:
        return
    if w.users > 0:
        w._linger_armed = False  # the next to leave arms it again
        return
    left = w._left_at + _LINGER - loop.time()
    if left > 0:
        loop.call_later(left, _linger_over, watch)
        return
    w._linger_armed = False
    w.stop()


#: The watches by loop and device descriptor, for the next transport to find. Both weakly: a
#: watch is held by the loop (its reader registrations) and by its transports (which hold the
#: loop), so that a loop that ends lets go of it even with a transport left open.
_device_watches: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakValueDictionary[int, _DeviceWatch]
] = weakref.WeakKeyDictionary()


def _watch_device(loop: asyncio.AbstractEventLoop, sock: Any) -> _DeviceWatch | None:
    """Counts one more user of `sock`'s stack device on `loop`, starting to poll it."""
    if os.environ.get("MIPFAST_LOOP_POLL") == "0":
        return None
    poller = sock._device_poller()
    fd = poller.fileno()
    if fd < 0:
        return None
    per_loop = _device_watches.setdefault(loop, weakref.WeakValueDictionary())
    watch = per_loop.get(fd)
    if watch is not None and watch.poller.fileno() != fd:  # a closed stack's, its number reused
        watch.stop()
        watch = None
    if watch is None:
        watch = _DeviceWatch(loop, poller, fd)
        try:
            watch.start()
        except (NotImplementedError, OSError, ValueError):
            return None  # a loop without add_reader: the driver thread does it all
        per_loop[fd] = watch
    watch.enter()
    return watch


def _unwatch_device(watch: _DeviceWatch | None) -> None:
    if watch is not None:
        watch.leave()


class _Waiting:
    """What one socket waits for on the loop: through the loop's device watch when
    it polls the device, else on the socket's own readiness descriptor with the
    loop's ``add_reader``/``add_writer`` (``MIPFAST_LOOP_POLL=0``, or a loop that
    cannot watch the device)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        self._loop, self._sock = loop, sock
        self._watch = _watch_device(loop, sock)
        self._token = self._watch.token() if self._watch is not None else 0
        self._fd = -1 if self._watch is not None else sock.fileno()
        self._reader: Callable[[], None] | None = None
        self._writer: Callable[[], None] | None = None
        self._closed = False

    def read(self, callback: Callable[[], None] | None) -> None:
        if self._closed or callback == self._reader:
            return
        self._reader = callback
        if self._watch is not None:
            self._watch.wait(self._sock, self._token, self._reader, self._writer)
        elif callback is not None:
            self._loop.add_reader(self._fd, callback)
        else:
            self._loop.remove_reader(self._fd)

    def write(self, callback: Callable[[], None] | None) -> None:
        if self._closed or callback == self._writer:
            return
        self._writer = callback
        if self._watch is not None:
            self._watch.wait(self._sock, self._token, self._reader, self._writer)
        elif callback is not None:
            self._loop.add_writer(self._fd, callback)
        else:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        """Waits for nothing more; the device watch loses a user."""
        if self._closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self.read(None)
            self.write(None)
        self._closed = True
        _unwatch_device(self._watch)
        self._watch = None


class StackTransport(asyncio.transports._FlowControlMixin):
    """An ``asyncio.Transport`` over a mipfast ``Connection``. Its base is the one asyncio's
    own socket transports share (write flow control), which ``loop.sendfile`` asks for."""

    # loop.start_tls checks for this before layering TLS on a transport.
    _start_tls_compatible = True
    # loop.sendfile: no zero-copy path into the stack, so asyncio's read-and-write fallback.
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK  # type: ignore[attr-defined]

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Any,
        protocol: asyncio.BaseProtocol,
        *,
        server: Server | None = None,
        connection_made: bool = True,
        early: bytes = b"",
    ) -> None:
        extra = {"socket": conn}
        try:
            extra["peername"] = conn.getpeername()
            extra["sockname"] = conn.getsockname()
        except OSError:
            pass
        super().__init__(extra, loop)
        self._loop = loop
        self._conn = conn
        conn.setblocking(False)
        # As asyncio does for every TCP transport (base_events._set_nodelay): a
        # response written in pieces must not wait for the peer's delayed ACK.
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._protocol: asyncio.BaseProtocol = protocol
        self._buffered = False
        self.set_protocol(protocol)
        self._buffer: collections.deque[memoryview] = collections.deque()
        self._buffered_size = 0
        self._reading = False
        # Received before this transport took the connection over (from a bridge):
        # the protocol gets it first, when it first reads.
        self._early = early
        self._paused = False
        self._closing = False
        self._eof_requested = False
        self._eof_sent = False
        self._lost = False
        self._protocol_paused = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._server = server
        if server is not None:
            server._attach(self)
        self._waiting = _Waiting(loop, conn)
        if connection_made:
            loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)

    # -- reading --

    def _start_reading(self) -> None:
        if self._early and not self._closing and not self._paused:
            early, self._early = self._early, b""
            self._deliver(early)
        if not self._closing and not self._paused and not self._reading:
            self._waiting.read(self._read_ready)
            self._reading = True

    def _deliver(self, data: bytes) -> None:
        """Hands ``data`` to the protocol as if read from the connection."""
        try:
            if not self._buffered:
                self._protocol.data_received(data)  # type: ignore[attr-defined]
                return
            view = memoryview(data)
            while view:
                buf = self._protocol.get_buffer(len(view))  # type: ignore[attr-defined]
                n = min(len(buf), len(view))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                memoryview(buf)[:n] = view[:n]
                self._protocol.buffer_updated(n)  # type: ignore[attr-defined]
                view = view[n:]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)

    def _stop_reading(self) -> None:
        if self._reading:
            self._waiting.read(None)
            self._reading = False

    def _read_ready(self) -> None:
        if self._lost:
            return
        try:
            if self._buffered:
                buf = self._protocol.get_buffer(-1)  # type: ignore[attr-defined]
                if not len(buf):
                    raise RuntimeError("get_buffer() returned an empty buffer")
                n = self._conn.recv_into(buf)
                if n:
                    self._protocol.buffer_updated(n)  # type: ignore[attr-defined]
                    return
            else:
                data = self._conn.recv(_READ_SIZE)
                if data:
                    self._protocol.data_received(data)  # type: ignore[attr-defined]
                    return
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        self._eof_received()

    def _eof_received(self) -> None:
        self._stop_reading()
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self._start_reading()

    def is_reading(self) -> bool:
        # As asyncio's transports answer: not paused, not closing (also before the first
        # read is armed, a loop iteration after the transport is made).
        return not self._paused and not self._closing

    # -- writing --

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._closing and self._lost:
            return
        view = memoryview(data).cast("B")
        if not self._buffer:
            try:
                n = self._conn.send(view)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc)
                return
            view = view[n:]
            if not view:
                return
            self._waiting.write(self._write_ready)
        # Our own copy: the caller may reuse its buffer once write() returns.
        self._buffer.append(memoryview(bytes(view)))
        self._buffered_size += len(view)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        while self._buffer:
            head = self._buffer[0]
            try:
                n = self._conn.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._waiting.write(None)
                self._buffer.clear()
                self._buffered_size = 0
                self._fatal_error(exc)
                return
            self._buffered_size -= n
            if n == len(head):
                self._buffer.popleft()
            else:
                self._buffer[0] = head[n:]
                break
        self._maybe_resume_protocol()
        if self._buffer:
            return
        self._waiting.write(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof_requested:
            self._send_eof()

    def _send_eof(self) -> None:
        if not self._eof_sent:
            self._eof_sent = True
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_WR)

    def write_eof(self) -> None:
        if self._closing or self._eof_requested:
            return
        self._eof_requested = True
        if not self._buffer:
            self._send_eof()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._buffered_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._buffered_size > self._high_water and not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {"message": "protocol.pause_writing() failed", "exception": exc, "transport": self}
                )

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffered_size <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {"message": "protocol.resume_writing() failed", "exception": exc, "transport": self}
                )

    # -- the rest of the Transport API --

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None, abort=True)

    def _fatal_error(self, exc: BaseException) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {"message": "Fatal error on mipfast transport", "exception": exc, "transport": self}
            )
        self._force_close(exc, abort=isinstance(exc, OSError))

    # asyncio's SSL protocol calls this, as on its own transports.
    def _force_close(self, exc: BaseException | None, abort: bool = True) -> None:
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffered_size = 0
            self._waiting.write(None)
        self._closing = True
        self._stop_reading()
        if abort:
            self._conn.abort()
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._stop_reading()
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]  # as asyncio passes it
        finally:
            self._waiting.close()
            self._conn.close()
            if self._server is not None:
                self._server._detach(self)
                self._server = None

    def __del__(self) -> None:
        if not getattr(self, "_lost", True) and not self._loop.is_closed():
            self._conn.close()

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<mipfast.asyncio.StackTransport {state} {self._conn!r}>"


class _Pending(asyncio.Protocol):
    """Holds a transport until TLS takes it over (start_tls sets the real protocol)."""


async def _layer_tls(
    loop: asyncio.AbstractEventLoop,
    transport: StackTransport,
    protocol: asyncio.BaseProtocol,
    context: _ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
) -> asyncio.Transport:
    try:
        tls = await loop.start_tls(
            transport,
            protocol,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
        )
    except BaseException:
        transport.abort()
        raise
    if tls is None:  # the transport closed during the handshake
        raise ConnectionResetError("connection closed during the TLS handshake")
    protocol.connection_made(tls)
    return tls


def _tls_context(ssl: _ssl.SSLContext | bool | None, server_side: bool) -> _ssl.SSLContext | None:
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        if server_side:
            raise ValueError("a server needs an ssl.SSLContext with its certificate")
        return _ssl.create_default_context()
    if not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {type(ssl).__name__}")
    return ssl


async def _open(stack: Any, host: str, port: int, timeout: float | None, local_port: int | None) -> Any:
    """Resolves (in a thread: a lookup left behind on cancellation just ends) and
    connects without a thread: the handshake runs in the stack while the loop waits
    for the connection's descriptor to turn writable, as for a non-blocking
    kernel socket. Each address in turn, the last error raised."""
    return await asyncio.wait_for(_connect(stack, host, port, local_port), timeout)


async def _connect(stack: Any, host: str, port: int, local_port: int | None) -> Any:
    loop = asyncio.get_running_loop()
    try:
        ipaddress.ip_address(host.split("%")[0])  # a literal of either family (with its zone)
        addresses = [host]
    except ValueError:
        # Both families, as stack.connect asks for a name: in the order to try them.
        lookup = functools.partial(stack.resolve, host, family=socket.AF_UNSPEC)
        addresses = await loop.run_in_executor(None, lookup)
    last: OSError | None = None
    for address in addresses:
        conn = stack.connect((address, port), None, local_port, wait=False)
        try:
            await _handshake_done(loop, conn)
            return conn
        except OSError as e:
            conn.abort()
            last = e
        except BaseException:  # cancelled or timed out: no half-open connection is left
            conn.abort()
            raise
    raise last or OSError(errno.EHOSTUNREACH, "no address")


async def _handshake_done(loop: asyncio.AbstractEventLoop, conn: Any) -> None:
    """Waits for the connection's descriptor to turn writable; raises why it failed.
    A handshake over already (a veth's peer answers within the SYN's own send, and the
    stack takes that answer in passing) is not waited for."""
    if conn.state in ("SYN_SENT", "SYN_RECEIVED"):
        done = loop.create_future()
        waiting = _Waiting(loop, conn)
        waiting.write(lambda: None if done.done() else done.set_result(None))
        try:
            await done
        finally:
            waiting.close()
    err = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    stack: Any,
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    local_port: int | None = None,
    timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """``loop.create_connection`` through the stack: ``(transport, protocol)``.

    ``timeout`` bounds the name lookup and the handshake (None: the stack's own
    retransmission limits); ``server_hostname`` defaults to ``host`` with TLS.
    """
    loop = asyncio.get_running_loop()
    context = _tls_context(ssl, server_side=False)
    if server_hostname is not None and context is None:
        raise ValueError("server_hostname is only meaningful with ssl")
    conn = await _open(stack, host, port, timeout, local_port)
    hostname = host if server_hostname is None else server_hostname
    return await _client_transport(loop, conn, protocol_factory, context, hostname, ssl_handshake_timeout)


async def _client_transport(
    loop: asyncio.AbstractEventLoop,
    conn: Any,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    context: _ssl.SSLContext | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    early: bytes = b"",
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """The transport of the client's connection ``conn``, over TLS with ``context``;
    ``early``: bytes received before (by a bridge that had the connection)."""
    protocol = protocol_factory()
    if context is None:
        transport = StackTransport(loop, conn, protocol, early=early)
        # Returned once the protocol has it, as asyncio's own: a protocol that keeps the
        # transport from connection_made and writes through it (aiohttp's) may do so at once.
        made = loop.create_future()
        loop.call_soon(made.set_result, None)  # after the transport's connection_made
        await made
        return transport, protocol
    plain = StackTransport(loop, conn, _Pending(), connection_made=False, early=early)
    tls = await _layer_tls(
        loop,
        plain,
        protocol,
        context,
        server_side=False,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
    )
    return tls, protocol


async def open_connection(
    stack: Any,
    host: str,
    port: int,
    *,
    limit: int = _DEFAULT_LIMIT,
    **kwargs: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` through the stack (``ssl=``, ``server_hostname=`` as there)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, stack, host, port, **kwargs)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def start_tls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    sslcontext: _ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
) -> asyncio.StreamWriter:
    """Upgrades an open stream to TLS on every supported Python: ``writer.start_tls``
    from 3.11 (the same writer comes back), before it ``loop.start_tls`` under the same
    reader's protocol and a new writer on the TLS transport, which the caller uses from then on."""
    kwargs: dict[str, Any] = {
        "server_hostname": server_hostname,
        "ssl_handshake_timeout": ssl_handshake_timeout,
    }
    if hasattr(writer, "start_tls"):  # Python >= 3.11
        await writer.start_tls(sslcontext, **kwargs)
        return writer
    loop = asyncio.get_running_loop()
    await writer.drain()
    raw = writer.transport
    tls = await loop.start_tls(raw, raw.get_protocol(), sslcontext, **kwargs)
    if tls is None:
        raise ConnectionResetError(errno.ECONNRESET, "the connection ended during the TLS handshake")
    return asyncio.StreamWriter(tls, tls.get_protocol(), reader, loop)


class Server(asyncio.Server):
    """A listening port served on the event loop: an ``asyncio.Server`` (``isinstance``
    holds, every method behaves as the stdlib's), whose "socket" is a stack listener.
    Every method is our own; none of the base class's socket plumbing runs."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: Any,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        ssl: _ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._protocol_factory = protocol_factory
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._backlog = max(1, backlog)
        self._serving = False
        self._closed = False
        self._transports: set[StackTransport] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        self._waiting: _Waiting | None = None

    @property
    def sockets(self) -> tuple[Any, ...]:
        return () if self._closed else (self._listener,)

    @property
    def port(self) -> int:
        port: int = self._listener.port
        return port

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if not self._serving:
            self._serving = True
            self._waiting = _Waiting(self._loop, self._listener)
            self._waiting.read(self._accept_ready)

    def _accept_ready(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _peer = self._listener.accept(0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self._closed:
                    return
                if exc.errno == errno.EBADF:  # the stack closed under the server
                    self.close()
                    return
                self._loop.call_exception_handler(
                    {"message": "accept failed on a mipfast listener", "exception": exc}
                )
                return
            self._serve(conn)

    def _serve(self, conn: Any) -> None:
        try:
            protocol = self._protocol_factory()
        except BaseException:
            conn.abort()
            raise
        if self._ssl is None:
            StackTransport(self._loop, conn, protocol, server=self)
            return
        plain = StackTransport(self._loop, conn, _Pending(), server=self, connection_made=False)
        task = self._loop.create_task(
            _layer_tls(
                self._loop,
                plain,
                protocol,
                self._ssl,
                server_side=True,
                server_hostname=None,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        )
        # A failed handshake is the client's problem: the connection is dropped, the server goes on.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _attach(self, transport: StackTransport) -> None:
        self._transports.add(transport)

    def _detach(self, transport: StackTransport) -> None:
        self._transports.discard(transport)
        self._wake_if_done()

    def _wake_if_done(self) -> None:
        if self._closed and not self._transports:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    def close(self) -> None:
        """Stop listening; connections already accepted go on (as asyncio's Server)."""
        if self._closed:
            return
        self._closed = True
        if self._serving:
            self._serving = False
            if self._waiting is not None:
                self._waiting.close()
                self._waiting = None
        self._listener.close()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        self._wake_if_done()

    def close_clients(self) -> None:
        for transport in list(self._transports):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._transports):
            transport.abort()

    async def wait_closed(self) -> None:
        """Returns once the server is closed and its connections are done."""
        if self._closed and not self._transports:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def __repr__(self) -> str:
        return f"<mipfast.asyncio.Server {self._listener!r}>"


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    stack: Any,
    port: int,
    *,
    backlog: int = 100,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """``loop.create_server`` through the stack; port 0 picks a free one (``server.port``)."""
    loop = asyncio.get_running_loop()
    context = _tls_context(ssl, server_side=True)
    listener = stack.listen(port, backlog)
    server = Server(loop, listener, protocol_factory, context, ssl_handshake_timeout, backlog)
    if start_serving:
        server._start()
    return server


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    stack: Any,
    port: int,
    *,
    limit: int = _DEFAULT_LIMIT,
    **kwargs: Any,
) -> Server:
    """``asyncio.start_server`` through the stack."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(factory, stack, port, **kwargs)
