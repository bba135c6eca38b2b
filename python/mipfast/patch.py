"""The drop-in for code you cannot change: its outbound TCP goes through the stack.

    with mipfast.patch.patched(stack):
        import requests
        requests.get("http://10.77.0.1/")      # unmodified code, through the stack

or, for a whole program:  python -m mipfast.patch -i mip0 [--ip CIDR] script.py [args…]

What is routed: ``socket.getaddrinfo`` for TCP (names resolved by the stack's DNS),
``socket.create_connection``, and ``connect()``/``connect_ex()`` of every AF_INET
``SOCK_STREAM`` socket made through ``socket.socket`` (so urllib3, requests, http.client,
ftplib, smtplib, ``asyncio.open_connection`` and TLS over any of them). The socket stays a
genuine ``socket.socket`` (see :mod:`mipfast.bridge`). Not routed: loopback addresses,
UDP, IPv6, listening sockets, sockets created before patching, and C extensions that open
sockets themselves. The patch is process-wide while it is active.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import runpy
import socket
import sys
from collections.abc import Iterator
from typing import Any, Callable

from . import bridge

__all__ = ["patched", "main"]


def _through_stack(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def patched(stack: Any, route: Callable[[str], bool] = _through_stack) -> Iterator[None]:
    """Routes new outbound IPv4 TCP connections (to addresses for which ``route(ip)``
    holds: every non-loopback one by default) through ``stack`` while active."""
    original_socket = socket.socket
    original_getaddrinfo = socket.getaddrinfo

    class StackRoutedSocket(bridge.BridgedSocket):
        def _mip_route(self, address: Any) -> bool:
            return (
                self.family == socket.AF_INET
                and self.type == socket.SOCK_STREAM
                and isinstance(address, tuple)
                and route(str(address[0]))
                and self._mip_conn is None
            )

        def connect(self, address: Any) -> None:
            if not self._mip_route(address):
                return super().connect(address)
            timeout = self.gettimeout()
            conn = stack.connect((address[0], address[1]), timeout=timeout or None)
            conn.settimeout(timeout)
            self._mip_names = (conn.getsockname(), conn.getpeername())
            self._mip_conn = conn
            bridge.adopt(self, conn)

        def connect_ex(self, address: Any) -> int:
            try:
                self.connect(address)
            except OSError as e:
                return e.errno or -1
            return 0

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):  # noqa: A002
        if (
            host is None
            or family not in (0, socket.AF_INET)
            or type not in (0, socket.SOCK_STREAM)
            or proto not in (0, socket.IPPROTO_TCP)
            or host in ("localhost", "")
        ):
            return original_getaddrinfo(host, port, family, type, proto, flags)
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            literal = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None and (literal.version != 4 or not route(name)):
            return original_getaddrinfo(host, port, family, type, proto, flags)
        if isinstance(port, (str, bytes)):
            port = int(port) if str(port).isdigit() else socket.getservbyname(str(port), "tcp")
        addresses = [name] if literal is not None else stack.resolve(name)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port or 0)))
            for ip in addresses
            if route(ip)
        ] or original_getaddrinfo(host, port, family, type, proto, flags)

    socket.socket = StackRoutedSocket  # type: ignore[misc]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket = original_socket  # type: ignore[misc]
        socket.getaddrinfo = original_getaddrinfo


def main(argv: list[str] | None = None) -> int:
    """Run an unmodified Python program with its TCP through a stack."""
    import mipfast

    p = argparse.ArgumentParser(prog="python -m mipfast.patch", description=main.__doc__)
    p.add_argument("-i", "--iface", required=True, help="the interface the stack owns")
    p.add_argument("--ip", help="static address CIDR (default: DHCP)")
    p.add_argument("--gateway")
    p.add_argument("--dns", action="append", help="DNS server (repeatable)")
    p.add_argument("--timeout", type=float, default=10, help="seconds to wait for an address")
    p.add_argument("script", help="the program to run")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    with mipfast.Stack(a.iface, ip=a.ip, gateway=a.gateway, dns=a.dns) as stack:
        stack.wait_ready(a.timeout)
        sys.argv = [a.script, *a.args]
        with patched(stack):
            try:
                runpy.run_path(a.script, run_name="__main__")
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
