"""asyncio's ``loop.create_connection`` under :mod:`mipfast.patch`: a connection to a routed
address gets mipfast's own transport (:mod:`mipfast.asyncio`), not a bridged socket.

Through a bridged socket a connection costs a socketpair, a descriptor swap and a second
registration with the loop, and every message two hops through the stack's driver thread
(the loop's write wakes the driver, the reply wakes the driver, which wakes the loop).
mipfast's transport is served by the loop itself, which polls the stack's device. That
covers ``asyncio.open_connection``, websockets and httpx (anyio) clients, which connect
through ``loop.create_connection(host, port)``.

A socket the program connects itself with ``loop.sock_connect`` (aiohttp, through
aiohappyeyeballs) gets no bridge at all: the loop waits for the stack's handshake as for a
transport's, and the socket's plain calls go to the connection until something needs its
descriptor. Handed over (``create_connection(sock=…)``), it becomes such a transport; one
that has a bridge (connected with ``connect()``) leaves it, taking along what it had received.

What it cannot serve so goes to asyncio's own method, and from there through the patched
sockets as before: a family other than IPv4's and IPv6's, a port given by service name, ``local_addr``
other than the stack's, a name that resolves beyond the route, and loops that are not
asyncio's selector loops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Callable

from . import asyncio as stack_asyncio
from ._routed import FAMILY_VERSIONS

#: What this path takes of ``create_connection``'s keywords; any other one set goes to asyncio.
_SERVED = {
    "ssl",
    "server_hostname",
    "ssl_handshake_timeout",
    "local_addr",
    "family",
    "proto",
    "flags",
    "sock",  # given as None: one not None is taken over (`_take_over`)
}
#: Keywords that tune what asyncio does and change nothing here (one address family, one
#: address at a time; the TLS shutdown's own default).
_IGNORED = {"ssl_shutdown_timeout", "happy_eyeballs_delay", "interleave", "all_errors"}

CreateConnection = Callable[..., Any]


def routed_create_connection(
    stack: Any, route: Callable[[str], bool], original: CreateConnection
) -> CreateConnection:
    """``BaseEventLoop.create_connection`` serving routed addresses with ``stack``'s transports."""

    async def create_connection(
        self: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: Any = None,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        if kwargs.get("sock") is not None:
            return await _take_over(self, original, protocol_factory, host, port, kwargs)
        local_port = _local_port(stack, self, host, port, kwargs)
        family = kwargs.get("family", 0)
        addresses = None if local_port is None else await _routed_addresses(self, route, host, (port, family))
        if addresses is None:
            return await original(self, protocol_factory, host, port, **kwargs)  # type: ignore[no-any-return]
        tls = kwargs.get("ssl")
        server_hostname = kwargs.get("server_hostname")
        if tls and server_hostname is None:
            server_hostname = host  # checked against the name asked for, not the address
        last: OSError | None = None
        for address in addresses:
            try:
                return await stack_asyncio.create_connection(
                    protocol_factory,
                    stack,
                    address,
                    int(port),
                    ssl=tls,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
                    local_port=local_port or None,
                )
            except OSError as e:
                last = e
        assert last is not None
        raise last

    return create_connection


SockConnect = Callable[..., Any]


def routed_sock_connect(original: SockConnect) -> SockConnect:
    """``BaseSelectorEventLoop.sock_connect`` that connects a patched socket to a routed
    address without a bridge (see the module); anything else is asyncio's."""

    async def sock_connect(self: Any, sock: Any, address: Any) -> None:
        begin = getattr(sock, "_mip_connect_begin", None)
        conn = None if begin is None or not _literal_ip(address) else begin(address)
        if conn is None:
            return await original(self, sock, address)  # type: ignore[no-any-return]
        try:
            await stack_asyncio._handshake_done(self, conn)
        except BaseException:  # refused, timed out, cancelled: no half-open connection is left
            sock._mip_connect_end(conn, connected=False)
            raise
        sock._mip_connect_end(conn, connected=True)

    return sock_connect


def _literal_ip(address: Any) -> bool:
    """``(IP address, port[, flowinfo, scope_id])``: what a socket's ``connect()`` takes without
    a lookup (asyncio's own ``sock_connect`` resolves a name first)."""
    if not (isinstance(address, tuple) and 2 <= len(address) <= 4 and isinstance(address[0], str)):
        return False
    try:
        ipaddress.ip_address(address[0])
    except ValueError:
        return False
    return True


#: ``create_connection(sock=…)``'s keywords this path takes.
_TAKEN_OVER = {"sock", "ssl", "server_hostname", "ssl_handshake_timeout"}


async def _take_over(
    loop: Any,
    original: CreateConnection,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any,
    port: Any,
    kwargs: dict[str, Any],
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """``create_connection(sock=…)`` of a patched socket connected through the stack (aiohttp
    connects its sockets itself): its connection leaves the bridge for a transport of ours,
    with what the bridge had received for it. Anything else is asyncio's, as before."""
    sock = kwargs["sock"]
    tls, server_hostname = kwargs.get("ssl"), kwargs.get("server_hostname")
    if (
        host is not None
        or port is not None
        or set(kwargs) - _TAKEN_OVER - _IGNORED
        or bool(tls) != (server_hostname is not None)  # asyncio's ValueError, from asyncio
        or not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        or getattr(sock, "type", None) != socket.SOCK_STREAM
        or not hasattr(sock, "_mip_release")
    ):
        return await original(loop, protocol_factory, host, port, **kwargs)  # type: ignore[no-any-return]
    released = sock._mip_release()
    if released is None:
        return await original(loop, protocol_factory, host, port, **kwargs)  # type: ignore[no-any-return]
    conn, early = released
    context = stack_asyncio._tls_context(tls, server_side=False)
    timeout = kwargs.get("ssl_handshake_timeout")
    return await stack_asyncio._client_transport(
        loop, conn, protocol_factory, context, server_hostname, timeout, early
    )


def _local_port(stack: Any, loop: Any, host: Any, port: Any, kwargs: dict[str, Any]) -> int | None:
    """The local port to leave from (0: any), or None where asyncio's own method serves the call."""
    if set(kwargs) - _SERVED - _IGNORED:
        return None
    if not isinstance(host, str):
        return None
    if not (isinstance(port, int) or (isinstance(port, str) and port.isdigit())):
        return None  # None, or a service name: asyncio's lookup says what it means
    if kwargs.get("family", 0) not in (0, socket.AF_INET, socket.AF_INET6) or kwargs.get("flags", 0):
        return None
    if kwargs.get("proto", 0) not in (0, socket.IPPROTO_TCP):
        return None
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return None
    local = kwargs.get("local_addr")
    if local is None:
        return 0
    if len(local) != 2 or local[0] not in ("", "0.0.0.0", stack.ip) or not isinstance(local[1], int):
        return None
    return int(local[1])


async def _routed_addresses(
    loop: Any, route: Callable[[str], bool], host: str, where: tuple[Any, int]
) -> list[str] | None:
    """The addresses of `family` (0: both) that ``host`` names, if the route gives every one
    to the stack."""
    port, family = where
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host] if ip.version in FAMILY_VERSIONS[family] and route(host) else None
    if host in ("", "localhost"):
        return None
    try:
        # The patched getaddrinfo: the stack's DNS for names it resolves.
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except OSError:
        return None  # asyncio's own method raises it as it does
    addresses = [info[4][0] for info in infos]
    return addresses if addresses and all(route(a) for a in addresses) else None
