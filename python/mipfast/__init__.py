"""mipfast: a TCP/IP stack in user space, over pcap, driven from Python.

import mipfast
with mipfast.Stack("mip0") as stack:      # DHCP; or ip="10.77.0.2/24", gateway="10.77.0.1"
    stack.wait_ready(timeout=5)
    print(stack.ip, stack.gateway, stack.dns)
    with stack.connect(("10.77.0.1", 80), timeout=3) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print(conn.recv(65536))
    print(stack.resolve("example.com"), stack.ping("10.77.0.1", count=3))
    with stack.udp() as sock:
        sock.sendto(b"hello", ("10.77.0.1", 7))
"""

from __future__ import annotations

import atexit
import weakref

from . import _native
from ._native import DEFAULT_MAC, Connection, Listener, UdpSocket, interfaces, reset_logging

__all__ = ["Stack", "Connection", "Listener", "UdpSocket", "interfaces", "reset_logging", "DEFAULT_MAC"]

_open_stacks: weakref.WeakSet[Stack] = weakref.WeakSet()


class Stack(_native.Stack):
    """A TCP/IP stack that owns one network interface through pcap.

    ``ip=None`` asks DHCP for an address; ``ip="10.77.0.2/24"`` sets it statically.
    Use it as a context manager to run a driver thread, or call ``poll()`` in a loop.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        _open_stacks.add(self)


@atexit.register
def _close_all() -> None:
    # Driver threads log through Python; stop them before the interpreter goes away.
    for stack in list(_open_stacks):
        stack.close()
