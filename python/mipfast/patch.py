"""The drop-in for code you cannot change: its TCP and UDP go through the stack.

    with mipfast.patch.patched(stack):
        import requests
        requests.get("http://10.77.0.1/")      # unmodified code, through the stack

or, for a whole program:  python -m mipfast.patch -i mip0 [--ip CIDR] (script.py | -m module) [args…]

What is routed (:mod:`mipfast._routed` has how):

- ``socket.getaddrinfo`` for TCP and UDP (names resolved by the stack's DNS, A and AAAA
  records as the family asks, IPv6 addresses the stack can reach first), so
  ``socket.create_connection`` and everything built on it;
- ``connect()``/``connect_ex()`` of every AF_INET or AF_INET6 ``SOCK_STREAM`` socket made through
  ``socket.socket`` (urllib3, requests, http.client, ftplib, smtplib,
  ``asyncio.open_connection``, and TLS over any of them). The socket stays a genuine
  ``socket.socket`` (see :mod:`mipfast.bridge`); its TCP options are the stack connection's.
  A non-blocking ``connect()`` (asyncio's, Twisted's) returns at once with ``EINPROGRESS``,
  the socket turning writable when the handshake is over and ``SO_ERROR`` telling how it
  ended. Its descriptor is the connection's for good from then on, so an epoll or kqueue
  loop that registers it during the handshake keeps its registration;
- servers: an AF_INET ``SOCK_STREAM`` socket bound to the wildcard address (``""``,
  ``0.0.0.0``) or to the stack's own listens on the stack (``socket.create_server``,
  ``socketserver``, ``http.server``, ``asyncio.start_server``, uvicorn…). ``bind()`` takes the
  stack's port (port 0 picks a free one, which ``getsockname()`` gives), ``listen()`` makes
  the socket's descriptor readable while a connection waits, and ``accept()`` returns bridged
  ``socket.socket`` objects, blocking or not as the listening socket is. TCP options set on
  the listening socket (``TCP_NODELAY``, keepalive) pass on to the connections it accepts,
  as a kernel's listener passes them on. A passive ``getaddrinfo`` of the wildcard address
  answers IPv4 first, so a server that binds its first answer binds the stack's. A dual-stack
  socket (AF_INET6 on ``::``, ``IPV6_V6ONLY`` off) listens on the stack too, for both families,
  its IPv4 peers named as IPv4-mapped addresses; an AF_INET one takes IPv4 peers only;
- asyncio's ``loop.create_connection`` to a routed address (``asyncio.open_connection``,
  websockets, httpx): the connection gets mipfast's own transport
  (:mod:`mipfast._routed_asyncio`), served by the loop itself with no bridge, and so does a
  patched socket the program connected itself and hands over (``sock=``: aiohttp); a
  ``loop.sock_connect`` of a patched socket to a routed address makes no bridge either;
- TLS over any of these (``ssl.SSLContext`` gets a socket class of its own while the patch is
  active, :mod:`mipfast._bridged_tls`): a wrapped listening socket accepts on the stack, and a
  wrapped connection keeps the stack connection's names and TCP options;
- UDP: an AF_INET or AF_INET6 ``SOCK_DGRAM`` socket bound as a server is, or connected or sending to a
  routed address, sends and receives through a stack UDP socket (``sendto``, ``recvfrom``,
  ``send``, ``recv`` and their ``_into`` forms, ``SO_BROADCAST``, ``SO_RCVBUF``), its
  descriptor readable while a datagram waits (``asyncio``'s datagram endpoints, dnspython).

uvloop opens its sockets in C: while the patch is active, ``import uvloop`` gives asyncio's own
loop in uvloop's names (:mod:`mipfast._uvloop_stand_in`), which is routed.

Not routed: loopback addresses, IPv4-mapped destinations of IPv6 sockets, IPv6-only servers
(``IPV6_V6ONLY`` on: they stay beside the IPv4 server that holds the stack's port), raw sockets,
sockets bound to another address or created before patching, and C extensions that open
sockets themselves. The patch is
process-wide while it is active.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import ipaddress
import logging
import runpy
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any, Callable

from ._bridged_tls import BridgedSSLSocket
from ._routed import FAMILY_VERSIONS, routed_socket_class
from ._routed_asyncio import routed_create_connection, routed_sock_connect

__all__ = ["patched", "main"]


@functools.lru_cache(maxsize=4096)  # asked at every connect(), and parsing costs ~10 µs
def _through_stack(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)  # asked at every getaddrinfo(), as above
def _ip_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, None for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _service_port(port: Any, protocol: str) -> int:
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, str):
        return int(port) if port.isdigit() else socket.getservbyname(port, protocol)
    return int(port or 0)


def _address_info(ip: str, kind: int, proto: int, port: int) -> tuple[Any, ...]:
    """One ``getaddrinfo`` answer: an IPv6 address with the four-item socket address."""
    if ":" in ip:
        return (socket.AF_INET6, kind, proto, "", (ip, port, 0, 0))
    return (socket.AF_INET, kind, proto, "", (ip, port))


class _UvloopStandIn(importlib.abc.MetaPathFinder):
    """Finds :mod:`mipfast._uvloop_stand_in` for ``import uvloop``, where uvloop is installed
    (uvloop's sockets are libuv's, out of the patch's reach)."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "uvloop" or importlib.machinery.PathFinder.find_spec(fullname) is None:
            return None
        stand_in = importlib.util.find_spec("mipfast._uvloop_stand_in")
        assert stand_in is not None and stand_in.origin is not None
        return importlib.util.spec_from_file_location(fullname, stand_in.origin)


@contextlib.contextmanager
def patched(stack: Any, route: Callable[[str], bool] = _through_stack) -> Iterator[None]:
    """Routes new TCP connections and UDP sockets of both families (to addresses for which
    ``route(ip)`` holds: every non-loopback one by default; ``ip`` is an IPv4 or an IPv6
    address), and servers on the wildcard address or the stack's own, through ``stack``
    while active."""
    original_socket = socket.socket
    original_getaddrinfo = socket.getaddrinfo
    kinds = {
        socket.SOCK_STREAM: (socket.IPPROTO_TCP, "tcp"),
        socket.SOCK_DGRAM: (socket.IPPROTO_UDP, "udp"),
    }

    def getaddrinfo(  # noqa: A002 (the stdlib's parameter names)
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        wanted = [
            kind for kind, (protocol, _) in kinds.items() if type in (0, kind) and proto in (0, protocol)
        ]
        if host is None and flags & socket.AI_PASSIVE:
            # The wildcard address to serve on: IPv4's first, so that a server that binds
            # only the first answer (http.server) serves on the stack, IPv4 only, where the
            # system would have put IPv6 first. The rest stay, for servers that bind them all.
            infos = original_getaddrinfo(host, port, family, type, proto, flags)
            return sorted(infos, key=lambda info: info[0] != socket.AF_INET)
        if host is None or family not in FAMILY_VERSIONS or not wanted or host in ("localhost", ""):
            return original_getaddrinfo(host, port, family, type, proto, flags)
        name = host.decode() if isinstance(host, bytes) else str(host)
        version = _ip_version(name)
        if version is not None and (version not in FAMILY_VERSIONS[family] or not route(name)):
            return original_getaddrinfo(host, port, family, type, proto, flags)
        # A name: the stack's lookup of the family asked (both for AF_UNSPEC, in the order a
        # connection should try them, RFC 6724 as the stack applies it).
        addresses = [name] if version is not None else stack.resolve(name, family=family)
        return [
            _address_info(ip, kind, kinds[kind][0], _service_port(port, kinds[kind][1]))
            for ip in addresses
            if route(ip)
            for kind in wanted
        ] or original_getaddrinfo(host, port, family, type, proto, flags)

    original_tls_class = ssl.SSLContext.sslsocket_class
    loops = asyncio.base_events.BaseEventLoop
    original_create_connection = loops.create_connection
    selector_loops = asyncio.selector_events.BaseSelectorEventLoop
    original_sock_connect = selector_loops.sock_connect
    socket.socket = routed_socket_class(stack, route)  # type: ignore[misc]
    socket.getaddrinfo = getaddrinfo
    ssl.SSLContext.sslsocket_class = BridgedSSLSocket
    loops.create_connection = routed_create_connection(stack, route, original_create_connection)  # type: ignore[method-assign]
    selector_loops.sock_connect = routed_sock_connect(original_sock_connect)  # type: ignore[method-assign]
    if "uvloop" in sys.modules:
        logging.getLogger(__name__).warning(
            "uvloop was imported before the patch: its loops use the kernel's network, not the stack"
        )
    stand_in = _UvloopStandIn()
    sys.meta_path.insert(0, stand_in)
    try:
        yield
    finally:
        sys.meta_path.remove(stand_in)
        if getattr(sys.modules.get("uvloop"), "STANDS_IN", False):
            del sys.modules["uvloop"]  # the real one for whatever imports it next
        socket.socket = original_socket  # type: ignore[misc]
        socket.getaddrinfo = original_getaddrinfo
        ssl.SSLContext.sslsocket_class = original_tls_class
        loops.create_connection = original_create_connection  # type: ignore[method-assign]
        selector_loops.sock_connect = original_sock_connect  # type: ignore[method-assign]


#: Our options that take a value: the program's own options come after its name.
_VALUED = ("-i", "--iface", "--ip", "--gateway", "--dns", "--timeout")


def _split(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Splits ``argv`` as ``python`` does: our options, then ``-m MODULE`` or a script, then
    the program's arguments (options among them are the program's, not ours)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            if i + 1 == len(argv):
                return argv[:i] + [arg], None, []  # argparse then says -m needs a value
            return argv[:i], argv[i + 1], argv[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):
            return argv[:i], arg[2:], argv[i + 1 :]
        if arg in _VALUED:
            i += 2
        elif arg.startswith("-") and arg != "-":
            i += 1
        else:
            return argv[:i], None, argv[i:]
    return argv, None, []


def main(argv: list[str] | None = None) -> int:
    """Run an unmodified Python program with its TCP through a stack."""
    import mipfast

    p = argparse.ArgumentParser(
        prog="python -m mipfast.patch",
        usage="%(prog)s -i IFACE [options] (script | -m module) [args ...]",
        description=main.__doc__,
    )
    p.add_argument("-i", "--iface", required=True, help="the interface the stack owns")
    p.add_argument("--ip", help="static address CIDR (default: DHCP)")
    p.add_argument("--gateway")
    p.add_argument("--dns", action="append", help="DNS server (repeatable)")
    p.add_argument("--timeout", type=float, default=10, help="seconds to wait for an address")
    p.add_argument("-m", dest="module", metavar="module", help="run a module as a program, as python -m does")
    ours, module, program = _split(sys.argv[1:] if argv is None else list(argv))
    a = p.parse_args(ours)
    if module is None and not program:
        p.error("a script to run, or -m module, is required")
    with mipfast.Stack(a.iface, ip=a.ip, gateway=a.gateway, dns=a.dns) as stack:
        stack.wait_ready(a.timeout)
        with patched(stack):
            try:
                if module is not None:
                    sys.argv = [module, *program]
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
                else:
                    sys.argv = program
                    runpy.run_path(program[0], run_name="__main__")
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
