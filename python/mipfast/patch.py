"""The drop-in for code you cannot change: its outbound TCP goes through the stack.

    with mipfast.patch.patched(stack):
        import requests
        requests.get("http://10.77.0.1/")      # unmodified code, through the stack

or, for a whole program:  python -m mipfast.patch -i mip0 [--ip CIDR] script.py [args…]

What is routed: ``socket.getaddrinfo`` for TCP (names resolved by the stack's DNS),
``socket.create_connection``, and ``connect()``/``connect_ex()`` of every AF_INET
``SOCK_STREAM`` socket made through ``socket.socket`` (so urllib3, requests, http.client,
ftplib, smtplib, ``asyncio.open_connection`` and TLS over any of them). The socket stays a
genuine ``socket.socket`` (see :mod:`mipfast.bridge`).

Servers too: an AF_INET ``SOCK_STREAM`` socket bound to the wildcard address (``""``,
``0.0.0.0``) or to the stack's own listens on the stack (``socket.create_server``,
``socketserver``, ``http.server``, ``asyncio.start_server``, uvicorn…). ``bind()`` takes the
stack's port (port 0 picks a free one, which ``getsockname()`` gives), ``listen()`` makes
the socket's descriptor readable while a connection waits, and ``accept()`` returns bridged
``socket.socket`` objects, blocking or not as the listening socket is. TCP options set on
the listening socket (``TCP_NODELAY``, keepalive) are passed on to the connections it accepts,
as a kernel's listener passes them on. A socket bound to a loopback or any other address
stays the kernel's.

Not routed: loopback addresses, UDP, IPv6, sockets created before patching, and C extensions
that open sockets themselves. The patch is process-wide while it is active.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
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

    def serves_here(host: str) -> bool:
        """A listening address the stack answers for: the wildcard or its own."""
        return host in ("", "0.0.0.0") or host == stack.ip

    class StackRoutedSocket(bridge.BridgedSocket):
        _mip_listener: Any = None
        _mip_bound: tuple[str, int] | None = None
        _mip_backlog: int | None = None
        _mip_inherited: tuple[tuple[int, int, Any], ...] = ()

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

        def bind(self, address: Any) -> None:
            if not (
                self.family == socket.AF_INET
                and self.type == socket.SOCK_STREAM
                and isinstance(address, tuple)
                and len(address) == 2
                and isinstance(address[0], str)
                and serves_here(address[0])
                and self._mip_bound is None
                and self._mip_conn is None
            ):
                return super().bind(address)
            port = address[1]
            if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
                raise OverflowError("bind(): port must be 0-65535.")
            # The port is taken now, as a kernel's bind takes it (EADDRINUSE here, and
            # port 0 resolved for getsockname()); listen() sets the backlog.
            self._mip_listener = stack.listen(port, socket.SOMAXCONN)
            self._mip_bound = (address[0] or "0.0.0.0", self._mip_listener.port)

        def listen(self, backlog: int = socket.SOMAXCONN) -> None:
            if self._mip_bound is None:
                return super().listen(backlog)
            backlog = max(int(backlog), 0)
            if self._mip_backlog is None:
                if backlog != socket.SOMAXCONN:
                    self._mip_listener.close()
                    self._mip_listener = stack.listen(self._mip_bound[1], backlog)
                # The descriptor becomes the listener's readiness descriptor: select,
                # selectors and event loops see it readable while a connection waits.
                timeout = self.gettimeout()
                os.dup2(self._mip_listener.fileno(), self.fileno())
                self.settimeout(timeout)  # the new description gets the socket's blocking mode
            self._mip_backlog = backlog

        def accept(self) -> tuple[socket.socket, Any]:
            if self._mip_backlog is None:
                if self._mip_bound is not None:
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # not listening yet
                return super().accept()
            conn, peer = self._mip_listener.accept(self.gettimeout())
            for level, optname, value in self._mip_inherited:
                with contextlib.suppress(OSError):
                    conn.setsockopt(level, optname, value)
            conn.settimeout(socket.getdefaulttimeout())  # as socket.accept() leaves it
            return bridge.socket_for(conn), peer

        def getsockname(self) -> Any:
            if self._mip_bound is not None:
                return self._mip_bound
            return super().getsockname()

        def setsockopt(self, level: int, optname: int, value: Any, *args: Any) -> None:
            if self._mip_bound is None or args or not isinstance(value, int):
                return super().setsockopt(level, optname, value, *args)
            if level == socket.IPPROTO_TCP or (level, optname) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE):
                self._mip_inherited = (*self._mip_inherited, (level, optname, value))
            if self._mip_backlog is None or level != socket.IPPROTO_TCP:
                super().setsockopt(level, optname, value)

        def close(self) -> None:
            listener, self._mip_listener = self._mip_listener, None
            if listener is not None:
                listener.close()
            super().close()

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
