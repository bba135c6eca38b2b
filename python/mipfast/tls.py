"""TLS over a stack connection with the stdlib's ``ssl`` module.

``TlsConnection`` runs an ``ssl.SSLObject`` over a mipfast ``Connection``: the
same certificate verification, SNI, ALPN and session handling as
``SSLContext.wrap_socket`` gives a kernel socket, and the methods of an
``ssl.SSLSocket`` (``getpeercert``, ``version``, ``cipher``,
``selected_alpn_protocol``, ``unwrap``…).

    ctx = ssl.create_default_context(cafile="ca.pem")
    with stack.connect(("10.77.0.1", 443), ssl=ctx, server_hostname="peer.test") as tls:
        tls.sendall(b"GET / HTTP/1.0\\r\\nHost: peer.test\\r\\n\\r\\n")
"""

from __future__ import annotations

import ssl
from typing import Any, Callable, TypeVar, cast

from . import _io

__all__ = ["TlsConnection", "wrap"]

T = TypeVar("T")

# A TLS record's largest ciphertext: one read from the connection fills the BIO with at least one.
_CHUNK = 16 * 1024 + 512


class TlsConnection:
    """A TLS session over a mipfast ``Connection``, with ``ssl.SSLSocket``'s manners."""

    def __init__(
        self,
        conn: Any,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        session: ssl.SSLSession | None = None,
    ) -> None:
        if server_side and server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if context.check_hostname and not server_side and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        self._conn = conn
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
        self._suppress_ragged_eofs = suppress_ragged_eofs
        self._io_refs = 0
        self._close_requested = False
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        if do_handshake_on_connect:
            self.do_handshake()

    # -- moving bytes between the SSL object and the connection --

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._conn.sendall(data)

    def _fill(self) -> None:
        try:
            data = self._conn.recv(_CHUNK)
        except BlockingIOError:
            raise ssl.SSLWantReadError(
                ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)"
            ) from None
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _run(self, step: Callable[..., T], *args: Any) -> T:
        while True:
            try:
                result = step(*args)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except ssl.SSLWantWriteError:
                self._flush()
            else:
                self._flush()
                return result

    # -- the SSLSocket API --

    def do_handshake(self) -> None:
        self._run(self._obj.do_handshake)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv() on TlsConnection")
        if bufsize == 0:
            return b""
        try:
            return self._run(self._obj.read, bufsize)
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:
            if self._suppress_ragged_eofs:
                return b""
            raise

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv_into() on TlsConnection")
        view = memoryview(buffer).cast("B")
        if nbytes <= 0 or nbytes > len(view):
            nbytes = len(view)
        if nbytes == 0:
            return 0
        try:
            return cast(int, self._run(self._obj.read, nbytes, view))  # a count, given a buffer
        except ssl.SSLZeroReturnError:
            return 0
        except ssl.SSLEOFError:
            if self._suppress_ragged_eofs:
                return 0
            raise

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - the SSLSocket name
        return self.recv(len) if buffer is None else self.recv_into(buffer, len)

    def send(self, data: Any, flags: int = 0) -> int:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to send() on TlsConnection")
        return self._run(self._obj.write, data)

    def write(self, data: Any) -> int:
        return self.send(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = self.send(view[: 1 << 20], flags)
            view = view[n:]

    def pending(self) -> int:
        return self._obj.pending()

    def unwrap(self) -> Any:
        """Close the TLS session (close_notify both ways); returns the plain connection."""
        self._run(self._obj.unwrap)
        return self._conn

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._obj.getpeercert(binary_form)

    def version(self) -> str | None:
        return self._obj.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._obj.cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._obj.shared_ciphers()

    def compression(self) -> str | None:
        return self._obj.compression()

    def selected_alpn_protocol(self) -> str | None:
        return self._obj.selected_alpn_protocol()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._obj.get_channel_binding(cb_type)

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._obj.session

    @property
    def session_reused(self) -> bool:
        return self._obj.session_reused

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    @property
    def connection(self) -> Any:
        """The plain connection underneath."""
        return self._conn

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        file = _io.makefile(self, mode, buffering, **kwargs)
        self._io_refs += 1
        return file

    def _decref_socketios(self) -> None:
        self._io_refs = max(0, self._io_refs - 1)
        if self._io_refs == 0 and self._close_requested:
            self._conn.close()

    def close(self) -> None:
        self._close_requested = True
        if self._io_refs == 0:
            self._conn.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else is the connection's: timeouts, names, options, fileno, shutdown, abort.
        return getattr(self._conn, name)

    def __enter__(self) -> TlsConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mipfast.TlsConnection {self.version() or 'handshaking'} over {self._conn!r}>"


def wrap(
    conn: Any,
    context: ssl.SSLContext | None = None,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    **kwargs: Any,
) -> TlsConnection:
    """TLS over ``conn``; the default context is ``ssl.create_default_context()`` (verification on)."""
    if context is None:
        purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
        context = ssl.create_default_context(purpose)
    return TlsConnection(conn, context, server_side=server_side, server_hostname=server_hostname, **kwargs)
