"""TLS over bridged and routed sockets: the ``ssl.SSLSocket`` class :mod:`mipfast.patch`
gives ``ssl.SSLContext`` while it is active.

``SSLContext.wrap_socket`` detaches the socket it wraps and makes a new ``SSLSocket`` on its
descriptor. What the socket knew of the stack went with the old object: a connection's
names (the descriptor is a socketpair's, so ``getpeername()`` read ``''``) and TCP options
(``EOPNOTSUPP`` from the socketpair), and a listening socket's stack listener (its
descriptor only shows readiness, so ``SSLSocket`` took it for a connected socket and began a
handshake on it, which never ended: ``http.server`` with TLS hung at start).

This class keeps the wrapped socket (its descriptor now ours) and asks it for those: the
names, the options the stack answers for, and, for a listener, the next connection, which
it wraps as the stdlib's ``SSLSocket.accept`` does. Other sockets wrap as before.
"""

from __future__ import annotations

import contextvars
import errno
import os
import ssl
from typing import Any

from .bridge import BridgedSocket

#: The socket being wrapped, while ``SSLSocket._create`` asks the new socket about it.
_wrapping: contextvars.ContextVar[BridgedSocket | None] = contextvars.ContextVar("_wrapping", default=None)


class BridgedSSLSocket(ssl.SSLSocket):
    """``ssl.SSLSocket`` that keeps what the bridged or routed socket it wraps knew of the stack."""

    _mip_plain: BridgedSocket | None = None

    @classmethod
    def _create(cls, sock: Any, **kwargs: Any) -> Any:
        create = super()._create  # type: ignore[misc]  # the stdlib's, undocumented
        if not isinstance(sock, BridgedSocket):
            return create(sock=sock, **kwargs)
        token = _wrapping.set(sock)
        try:
            tls = create(sock=sock, **kwargs)
        finally:
            _wrapping.reset(token)
        tls._mip_plain = sock
        return tls

    def _mip_under(self) -> BridgedSocket | None:
        return self._mip_plain if self._mip_plain is not None else _wrapping.get()

    def getpeername(self) -> Any:
        under = self._mip_under()
        return super().getpeername() if under is None else under.getpeername()

    def getsockname(self) -> Any:
        under = self._mip_under()
        return super().getsockname() if under is None else under.getsockname()

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        under = self._mip_under()
        if under is not None and not args and under._mip_answers(level, optname):
            return under.getsockopt(level, optname)
        return super().getsockopt(level, optname, *args)

    def setsockopt(self, level: int, optname: int, value: Any, *args: Any) -> None:
        under = self._mip_under()
        if under is not None and not args and isinstance(value, int) and under._mip_answers(level, optname):
            return under.setsockopt(level, optname, value)
        return super().setsockopt(level, optname, value, *args)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        under = self._mip_under()
        if getattr(self, "_sslobj", None) is None and under is not None and under._mip_listening():
            # As a kernel listening socket answers (SSLSocket._create asks before any TLS).
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        return super().recv(buflen, flags)

    def accept(self) -> tuple[Any, Any]:
        under = self._mip_under()
        if under is None or not under._mip_listening():
            return super().accept()
        plain, address = under._mip_accept(self.gettimeout())
        tls = self.context.wrap_socket(
            plain,
            server_side=True,
            do_handshake_on_connect=getattr(self, "do_handshake_on_connect", True),
            suppress_ragged_eofs=getattr(self, "suppress_ragged_eofs", True),
        )
        return tls, address

    def _real_close(self) -> None:
        under, self._mip_plain = self._mip_plain, None
        super()._real_close()  # type: ignore[misc]
        if under is not None:
            under.close()  # its stack listener, if any; the descriptor was ours and is closed
