"""``urllib3`` over the stack: a ``PoolManager`` whose pools connect through it.

    http = mipfast.http.urllib3.pool_manager(stack)
    r = http.request("GET", "https://peer.test/")

Keep-alive, retries, redirects, timeouts and TLS verification are urllib3's own; its
exceptions are raised (``NewConnectionError``, ``ConnectTimeoutError``, ``NameResolutionError``…).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs

from ..tls import TlsConnection
from . import _idle

__all__ = ["pool_manager", "StackPoolManager"]


def _timeout(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None


class _StackConnection(HTTPConnection):
    """urllib3's connection, opened through the stack."""

    stack: Any = None

    @property
    def is_connected(self) -> bool:
        return self.sock is not None and not _idle.readable(self.sock)

    def _new_conn(self) -> Any:
        try:
            return self.stack.connect((self._dns_host, self.port), _timeout(self.timeout))
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except socket.timeout as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e


class _TlsContext:
    """An ``SSLContext`` as urllib3 configures it, whose ``wrap_socket`` also takes
    stack connections (urllib3 wraps whatever ``_new_conn`` returned)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        object.__setattr__(self, "_context", context)

    def wrap_socket(self, sock: Any, server_hostname: str | None = None, **kwargs: Any) -> Any:
        if isinstance(sock, socket.socket):
            return self._context.wrap_socket(sock, server_hostname=server_hostname, **kwargs)
        return TlsConnection(sock, self._context, server_hostname=server_hostname, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._context, name, value)


class _StackTlsConnection(HTTPSConnection, _StackConnection):
    def connect(self) -> None:
        context = self.ssl_context
        if not isinstance(context, _TlsContext):
            if context is None:
                # What urllib3 builds when given no context, certificates included.
                context = create_urllib3_context(
                    ssl_minimum_version=self.ssl_minimum_version,
                    ssl_maximum_version=self.ssl_maximum_version,
                    cert_reqs=resolve_cert_reqs(self.cert_reqs),
                )
                if not (self.ca_certs or self.ca_cert_dir or self.ca_cert_data):
                    context.load_default_certs()
            self.ssl_context = _TlsContext(context)  # type: ignore[assignment]
        super().connect()


class StackPoolManager(urllib3.PoolManager):
    """A ``urllib3.PoolManager`` over ``stack``."""

    def __init__(self, stack: Any, num_pools: int = 10, headers: Any = None, **connection_pool_kw: Any):
        super().__init__(num_pools, headers, **connection_pool_kw)
        plain = type("StackHTTPConnection", (_StackConnection,), {"stack": stack})
        tls = type("StackHTTPSConnection", (_StackTlsConnection,), {"stack": stack})
        self.pool_classes_by_scheme = {
            "http": type("StackHTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("StackHTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": tls}),
        }
        self.stack = stack


def pool_manager(stack: Any, **kwargs: Any) -> StackPoolManager:
    """``urllib3.PoolManager(**kwargs)`` connecting through ``stack``."""
    return StackPoolManager(stack, **kwargs)
