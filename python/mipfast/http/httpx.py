"""``httpx`` over the stack, sync and async, through httpcore network backends.

    with mipfast.http.httpx.client(stack) as c:
        r = c.get("https://peer.test/")
    async with mipfast.http.httpx.async_client(stack) as c:
        r = await c.get("https://peer.test/")

The transports are httpx's own (``HTTPTransport``/``AsyncHTTPTransport``: keep-alive,
limits, retries, TLS verification, httpx's exceptions); only the network backend that
opens connections is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

from .. import asyncio as mip_asyncio
from ..tls import TlsConnection
from . import _idle

__all__ = [
    "StackNetworkBackend",
    "AsyncStackNetworkBackend",
    "StackTransport",
    "AsyncStackTransport",
    "client",
    "async_client",
]


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except (socket.timeout, asyncio.TimeoutError) as e:  # both TimeoutError from 3.11
        raise timeout_error(str(e) or "timed out") from e
    except (OSError, ssl.SSLError) as e:
        raise other(str(e)) from e


class _Stream(httpcore.NetworkStream):
    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            self._sock.settimeout(timeout)
            data: bytes = self._sock.recv(max_bytes)
            return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            self._sock.settimeout(timeout)
            try:
                tls = TlsConnection(self._sock, ssl_context, server_hostname=server_hostname)
            except BaseException:
                self._sock.close()
                raise
        return _Stream(tls)

    def get_extra_info(self, info: str) -> Any:
        sock = self._sock
        if info == "ssl_object":
            return sock.ssl_object if isinstance(sock, TlsConnection) else None
        if info == "client_addr":
            return sock.getsockname()
        if info == "server_addr":
            return sock.getpeername()
        if info == "socket":
            return sock
        if info == "is_readable":
            return _idle.readable(sock)
        return None


class StackNetworkBackend(httpcore.NetworkBackend):
    """httpcore's sync network backend, connecting through ``stack``."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            return _Stream(self.stack.connect((host, port), timeout))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.UnsupportedProtocol("unix sockets are not on the stack")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            return await asyncio.wait_for(self._reader.read(max_bytes), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._writer.write(buffer)
            await asyncio.wait_for(self._writer.drain(), timeout)

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            self._writer = await asyncio.wait_for(
                mip_asyncio.start_tls(
                    self._reader, self._writer, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            sock = self._writer.get_extra_info("socket")
            return self._reader.at_eof() or (sock is not None and _idle.readable(sock))
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return self._writer.get_extra_info(info)


class AsyncStackNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio network backend, connecting through ``stack``."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            reader, writer = await mip_asyncio.open_connection(self.stack, host, port, timeout=timeout)
        return _AsyncStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> Any:
        raise httpcore.UnsupportedProtocol("unix sockets are not on the stack")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class StackTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport(**kwargs)`` whose connections go through ``stack``."""

    def __init__(self, stack: Any, **kwargs: Any) -> None:
        if kwargs.get("proxy") is not None:
            raise ValueError("proxies are not supported over mipfast")
        super().__init__(**kwargs)
        # httpcore's pool opens every connection through its network backend.
        self._pool._network_backend = StackNetworkBackend(stack)


class AsyncStackTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport(**kwargs)`` whose connections go through ``stack``."""

    def __init__(self, stack: Any, **kwargs: Any) -> None:
        if kwargs.get("proxy") is not None:
            raise ValueError("proxies are not supported over mipfast")
        super().__init__(**kwargs)
        self._pool._network_backend = AsyncStackNetworkBackend(stack)


_TRANSPORT_KWARGS = ("verify", "cert", "http1", "http2", "limits", "retries")


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in _TRANSPORT_KWARGS if k in kwargs}


def client(stack: Any, **kwargs: Any) -> httpx.Client:
    """``httpx.Client(**kwargs)`` over ``stack`` (``verify``, ``http2``, ``limits``… go to the transport)."""
    transport = StackTransport(stack, **_split(kwargs))
    kwargs.setdefault("trust_env", False)
    return httpx.Client(transport=transport, **kwargs)


def async_client(stack: Any, **kwargs: Any) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**kwargs)`` over ``stack``."""
    transport = AsyncStackTransport(stack, **_split(kwargs))
    kwargs.setdefault("trust_env", False)
    return httpx.AsyncClient(transport=transport, **kwargs)
