"""``http.client`` over the stack: the stdlib's connection classes, connected through it."""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

from ..tls import TlsConnection

__all__ = ["HTTPConnection", "HTTPSConnection"]


def _timeout(value: Any) -> float | None:
    # http.client passes socket's "global default" sentinel when no timeout was given.
    return None if value is socket._GLOBAL_DEFAULT_TIMEOUT else value  # type: ignore[attr-defined]


class HTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection(host, port)`` whose TCP goes through ``stack``."""

    def __init__(self, stack: Any, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.stack = stack

    def connect(self) -> None:
        if self._tunnel_host:  # type: ignore[attr-defined]
            raise http.client.HTTPException("proxy tunnels are not supported over mipfast")
        self.sock = self.stack.connect((self.host, self.port), _timeout(self.timeout))


class HTTPSConnection(HTTPConnection):
    """``http.client.HTTPSConnection`` through ``stack``; TLS by the stdlib's ``ssl``."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self,
        stack: Any,
        host: str,
        port: int | None = None,
        *,
        context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(stack, host, port, **kwargs)
        if context is None:
            context = ssl.create_default_context()
            if http.client.HTTPConnection._http_vsn == 11:  # type: ignore[attr-defined]
                context.set_alpn_protocols(["http/1.1"])
        self._context = context

    def connect(self) -> None:
        super().connect()
        try:
            self.sock = TlsConnection(self.sock, self._context, server_hostname=self.host)
        except BaseException:
            self.sock.close()
            self.sock = None
            raise
