"""The socket class :mod:`mipfast.patch` puts in place of ``socket.socket``.

Each of its sockets is a genuine ``socket.socket``. What it routes through the stack:

- **TCP clients**: ``connect()`` to an address the route takes makes a stack connection. A
  blocking socket's plain calls then go to the connection, and the socket becomes the Python
  end of a bridge to it only when something needs its descriptor
  (:func:`mipfast.bridge.adopt_unjoined`). A non-blocking one gets its bridge at once and shows
  the connection's readiness meanwhile: writable when the handshake is over, when ``SO_ERROR``
  (or the next call) settles it.
- **TCP servers**: ``bind()`` to the wildcard address or the stack's own takes the stack's
  port; ``listen()`` puts the stack listener's readiness descriptor in place of the socket's
  own (``dup2``), so that ``select`` and event loops see a waiting connection; ``accept()``
  returns bridged sockets. An IPv4 server takes IPv4 peers only; a dual-stack IPv6 socket
  (``::``, ``IPV6_V6ONLY`` off) is served so too, for both families, its IPv4 peers named
  as IPv4-mapped addresses. An IPv6-only server stays the kernel's.
- **UDP**: ``bind()`` as for TCP, or the first ``connect()``/``sendto()`` to a routed address,
  opens a stack UDP socket, whose readiness descriptor likewise takes the socket's place;
  every send and receive then goes to it, in datagrams, with the stack socket following this
  socket's timeout.

Clients and datagram sockets of both families are routed (an IPv6 socket's IPv4-mapped
destinations excepted). Anything else (loopback, raw sockets, a socket the kernel already bound
or connected) stays the kernel's.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from typing import Any, Callable

from . import bridge

#: Socket options a stack UDP socket takes (set before it exists: kept until then).
_UDP_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_BROADCAST),
    (socket.SOL_SOCKET, socket.SO_RCVBUF),
    (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP),
    (socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP),
    (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL),
    (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP),
    (socket.IPPROTO_IP, socket.IP_MULTICAST_IF),
    (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP),
    (socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP),
    (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS),
    (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP),
    (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF),
)
#: UDP options whose value is a struct (bytes), not an int.
_UDP_STRUCT_OPTIONS = {
    (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP),
    (socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP),
    (socket.IPPROTO_IP, socket.IP_MULTICAST_IF),
    (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP),
    (socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP),
}


#: The families whose TCP and UDP sockets the patch routes.
_FAMILIES = (socket.AF_INET, socket.AF_INET6)
#: The IP versions a ``getaddrinfo``/``create_connection`` family asks for.
FAMILY_VERSIONS: dict[int, tuple[int, ...]] = {
    socket.AF_UNSPEC: (4, 6),
    socket.AF_INET: (4,),
    socket.AF_INET6: (6,),
}


def _no_flags_but_dontwait(flags: int) -> None:
    if flags & ~socket.MSG_DONTWAIT:
        raise OSError(errno.EOPNOTSUPP, "only MSG_DONTWAIT is supported on a stack UDP socket")


def _text_host(address: Any) -> Any:
    """``address`` with a ``bytes`` host as text: the stdlib's socket takes either, and the route,
    the stack and ``getsockname()`` go by text."""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], (bytes, bytearray)):
        return (bytes(address[0]).decode("ascii", "replace"), *address[1:])
    return address


def _multicast_group(address: Any) -> bool:
    """``(group, port[, …])``: a multicast address a datagram socket may bind to receive it."""
    if not (isinstance(address, tuple) and 2 <= len(address) <= 4 and isinstance(address[0], str)):
        return False
    try:
        return ipaddress.ip_address(address[0].split("%")[0]).is_multicast
    except ValueError:
        return False


def _port(address: Any, what: str) -> int:
    port = address[1]
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{what}(): port must be 0-65535.")
    return port


class RoutedSocket(bridge.BridgedSocket):
    """``socket.socket`` with TCP and UDP routed through ``_mip_stack``; see the module."""

    _mip_stack: Any = None
    #: Whether an IP address (either family) is the stack's to reach (a class's own ``route``).
    _mip_routes: Callable[[str], bool] = staticmethod(lambda host: False)

    # TCP server.
    _mip_listener: Any = None
    _mip_bound: tuple[Any, ...] | None = None
    _mip_backlog: int | None = None
    # TCP client: a stack connection whose non-blocking connect() is under way.
    _mip_pending: Any = None
    # UDP.
    _mip_udp: Any = None
    # The kernel bound or connected this socket: it stays the kernel's.
    _mip_kernel = False
    # The family of peers the stack listener takes (AF_UNSPEC: both, for a dual-stack socket).
    _mip_listen_family: int = socket.AF_INET
    # Options set before the stack socket existed, or to pass on to accepted connections.
    _mip_options: tuple[tuple[int, int, int], ...] = ()

    # ---- which sockets and addresses are routed

    def _mip_of(self, kind: socket.SocketKind) -> bool:
        return self.family in _FAMILIES and self.type == kind and not self._mip_kernel

    def _mip_serves(self, address: Any) -> bool:
        """An address to listen or receive on that the stack answers for: IPv4's wildcard or
        the stack's IPv4 address; for datagrams also IPv6's wildcard or one of the stack's
        IPv6 addresses (an IPv6 TCP server is the stack's only when dual-stack, see
        ``_mip_dual_stack``: one that is IPv6-only stays the kernel's, beside the IPv4 server
        on the stack's port that would otherwise take its port)."""
        if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
            return False
        if self.family == socket.AF_INET:
            return len(address) == 2 and address[0] in ("", "0.0.0.0", self._mip_stack.ip)
        host = address[0].split("%")[0]
        return (
            self.type == socket.SOCK_DGRAM
            and 2 <= len(address) <= 4
            and (host in ("", "::") or host in self._mip_stack.ipv6_addresses)
        )

    def _mip_dual_stack(self, address: Any) -> bool:
        """An IPv6 TCP socket about to bind the wildcard address with ``IPV6_V6ONLY`` off
        (Linux's default, ``socket.create_server(..., dualstack_ipv6=True)``): it would take
        IPv4 connections too, so it listens on the stack, for both families."""
        return (
            self.family == socket.AF_INET6
            and self.type == socket.SOCK_STREAM
            and not self._mip_kernel
            and isinstance(address, tuple)
            and 2 <= len(address) <= 4
            and address[0] in ("", "::")
            and not super().getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        )

    def _mip_reaches(self, address: Any) -> bool:
        """A destination of this socket's family that the route gives to the stack (not an
        IPv4-mapped one of an IPv6 socket's: that is the kernel's dual-stack business)."""
        if not isinstance(address, tuple):
            return False
        host = str(address[0])
        if self.family == socket.AF_INET6:
            if not 2 <= len(address) <= 4 or ":" not in host or host.lower().startswith("::ffff:"):
                return False
        elif len(address) != 2:
            return False
        return self._mip_routes(host)

    # ---- TCP client, and UDP's default destination

    def connect(self, address: Any) -> None:
        address = _text_host(address)
        if self._mip_of(socket.SOCK_DGRAM) and (self._mip_udp is not None or self._mip_reaches(address)):
            _port(address, "connect")
            self._mip_open_udp().connect((address[0], address[1]))
            return None
        if self._mip_pending is not None or self._mip_conn is not None or self._mip_backlog is not None:
            # Connected (as Twisted asks again, once writable), listening, or still connecting.
            done = self._mip_pending is None or self._mip_settled()
            code = errno.EISCONN if done else errno.EALREADY
            raise OSError(code, os.strerror(code))
        source = self._mip_client_port()
        if not (self._mip_of(socket.SOCK_STREAM) and self._mip_reaches(address) and self._mip_conn is None):
            self._mip_kernel = True
            if source is not None and source[0] in ("", "0.0.0.0", "::"):
                super().bind(source)  # the address bind() was given, now the kernel's to take
            return super().connect(address)
        timeout = self.gettimeout()
        if timeout == 0.0:
            return self._mip_connecting(self._mip_start(address, source))
        port = None if source is None else source[1]
        conn = self._mip_stack.connect((address[0], address[1]), timeout=timeout, source_port=port)
        self._mip_pass_options(conn)
        self._mip_adopt(conn)

    def _mip_start(self, address: Any, source: tuple[Any, ...] | None) -> Any:
        """A stack connection to ``address``, from the port ``bind()`` took if any, its
        handshake under way."""
        port = None if source is None else source[1]
        conn = self._mip_stack.connect((address[0], address[1]), source_port=port, wait=False)
        self._mip_pass_options(conn)
        return conn

    def _mip_connecting(self, conn: Any) -> None:
        """A non-blocking ``connect()`` (asyncio's sock_connect) under way on ``conn``."""
        if conn.state not in ("SYN_SENT", "SYN_RECEIVED"):
            # Over already: the answer came within the SYN's own send (a veth's peer
            # answers there) and the call took it. Connected, or refused, at once.
            code = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                conn.close()
                raise OSError(code, os.strerror(code))
            return self._mip_adopt(conn)
        # The descriptor becomes the bridge's now, and for good: it turns writable when
        # the handshake is over, and an event loop that registers it meanwhile (epoll
        # and kqueue keep the description) goes on watching the connection.
        names = (conn.getsockname(), conn.getpeername())
        end = bridge.held_end(conn)
        try:
            bridge.replace_descriptor(self, end.fileno())
        finally:
            end.close()
        self._mip_names = names
        self._mip_pending = conn
        raise BlockingIOError(errno.EINPROGRESS, os.strerror(errno.EINPROGRESS))

    def _mip_connect_begin(self, address: Any) -> Any:
        """Starts this non-blocking socket's connection to ``address`` for an event loop that
        waits for the handshake itself (``loop.sock_connect``, :mod:`mipfast._routed_asyncio`),
        so that no bridge is made for it: the stack connection, or None where ``connect()``
        serves (the kernel's address, a blocking socket, a connect already made or under way)."""
        if (
            self.gettimeout() != 0.0
            or not self._mip_of(socket.SOCK_STREAM)
            or not self._mip_reaches(address)
            or self._mip_pending is not None
            or self._mip_conn is not None
            or self._mip_backlog is not None
        ):
            return None
        self._mip_pending = self._mip_start(address, self._mip_client_port())
        return self._mip_pending

    def _mip_connect_end(self, conn: Any, connected: bool) -> None:
        """The handshake ``_mip_connect_begin`` started is over: the socket is connected, its
        bridge made only when something needs the descriptor; or it failed (or the wait was
        cancelled) and the socket is unconnected again, as a kernel socket after a refusal."""
        self._mip_pending = None
        if not connected:
            conn.abort()
            return
        self._mip_adopt(conn, bridge.adopt_unwatched)

    def _mip_client_port(self) -> tuple[Any, ...] | None:
        """The address ``bind()`` took for a socket that turns out to be a client
        (``source_address``, ``local_addr``): the stack's listener on its port gives way,
        and the connection leaves from that port, as after a kernel socket's bind."""
        if self._mip_bound is None:
            return None
        bound, self._mip_bound = self._mip_bound, None
        self._mip_listener.close()
        self._mip_listener = None
        return bound

    def _mip_adopt(self, conn: Any, adopt: Callable[[Any, Any], None] = bridge.adopt_unjoined) -> None:
        """Makes this socket the Python end of a bridge to the connected ``conn``, made when
        ``adopt`` says (see :func:`mipfast.bridge.adopt_unjoined`)."""
        conn.settimeout(self.gettimeout())
        self._mip_names = (conn.getsockname(), conn.getpeername())
        self._mip_conn = conn
        self._mip_direct_ok = True
        adopt(self, conn)

    def _mip_settled(self) -> bool:
        """Where a non-blocking ``connect()`` stands: True once connected, False while
        the handshake goes on; its failure is raised, once."""
        conn = self._mip_pending
        try:
            code = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:  # the bridge has ended and let the connection go
            code = 0
        code = code or conn._bridge_failure()
        if code:
            self._mip_pending = None
            raise OSError(code, os.strerror(code))
        if conn.state in ("SYN_SENT", "SYN_RECEIVED"):
            return False
        self._mip_pending = None
        self._mip_conn = conn
        self._mip_direct_ok = True
        return True

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except OSError as e:
            return e.errno or -1
        return 0

    # ---- TCP server

    def bind(self, address: Any) -> None:
        address = _text_host(address)
        serves = self._mip_serves(address) or _multicast_group(address)  # a group's datagrams too
        if self._mip_of(socket.SOCK_DGRAM) and self._mip_udp is None and serves:
            self._mip_open_udp((address[0] or self._mip_wildcard(), _port(address, "bind")))
            return
        dual_stack = self._mip_dual_stack(address)
        if not (
            (dual_stack or (self._mip_of(socket.SOCK_STREAM) and self._mip_serves(address)))
            and self._mip_bound is None
            and self._mip_conn is None
        ):
            self._mip_kernel = True
            return super().bind(address)
        port = _port(address, "bind")
        # The port is taken now, as a kernel's bind takes it (EADDRINUSE here, and port 0
        # resolved for getsockname()); listen() sets the backlog.
        # An IPv4 server never meets an IPv6 peer (it could not name one); a dual-stack one
        # meets both.
        self._mip_listen_family = socket.AF_UNSPEC if dual_stack else socket.AF_INET
        self._mip_listener = self._mip_stack.listen(port, socket.SOMAXCONN, self._mip_listen_family)
        port = self._mip_listener.port
        self._mip_bound = ("::", port, 0, 0) if dual_stack else (address[0] or "0.0.0.0", port)

    def listen(self, backlog: int = socket.SOMAXCONN) -> None:
        if self._mip_bound is None:
            return super().listen(backlog)
        backlog = max(int(backlog), 0)
        if self._mip_backlog is None:
            if backlog != socket.SOMAXCONN:
                self._mip_listener.close()
                port = self._mip_bound[1]
                self._mip_listener = self._mip_stack.listen(port, backlog, self._mip_listen_family)
            bridge.replace_descriptor(self, self._mip_listener.fileno())
        self._mip_backlog = backlog

    def accept(self) -> tuple[socket.socket, Any]:
        if self._mip_backlog is None:
            if self._mip_bound is not None:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # not listening yet
            return super().accept()
        return self._mip_accept(self.gettimeout())

    def _mip_release(self) -> tuple[Any, bytes] | None:
        if self._mip_pending is not None:
            return None  # still connecting, or not yet asked how it ended
        return super()._mip_release()

    def _mip_listening(self) -> bool:
        return self._mip_backlog is not None

    def _mip_accept(self, timeout: float | None) -> tuple[socket.socket, Any]:
        """The next connection to this listening socket, as a bridged socket (also
        for the TLS socket that wraps this one, which owns the descriptor then)."""
        conn, peer = self._mip_listener.accept(timeout)
        self._mip_pass_options(conn)
        conn.settimeout(socket.getdefaulttimeout())  # as socket.accept() leaves it
        # A dual-stack socket names its IPv4 peers as IPv4-mapped addresses.
        sock = bridge.socket_for(conn, self.family, server=True)
        if self.family == socket.AF_INET6:
            peer = bridge.ipv4_mapped(peer)
        sock._mip_linger_set = self._mip_linger_set  # the listener's options are its connections'
        return sock, peer

    def _mip_pass_options(self, conn: Any) -> None:
        """Options set on this socket before ``connect()``, or on this listening socket,
        applied to the stack connection (those it does not know are the kernel's to ignore)."""
        for level, optname, value in self._mip_options:
            with contextlib.suppress(OSError):
                conn.setsockopt(level, optname, value)

    # ---- UDP

    def _mip_wildcard(self) -> str:
        return "::" if self.family == socket.AF_INET6 else "0.0.0.0"

    def _mip_open_udp(self, bind: tuple[str, int] | None = None) -> Any:
        if self._mip_udp is None:
            udp = self._mip_stack.udp(bind or (self._mip_wildcard(), 0))
            try:
                for level, optname, value in self._mip_options:
                    udp.setsockopt(level, optname, value)
                udp.settimeout(self.gettimeout())
                bridge.replace_descriptor(self, udp.fileno())
            except BaseException:
                udp.close()
                raise
            self._mip_udp = udp
        return self._mip_udp

    def _mip_datagrams(self) -> Any:
        """The stack UDP socket this socket's data goes to, or None for the descriptor's own
        (the kernel's, or a bridge's). A listening socket has none: its descriptor only
        shows readiness, and must not be read or written (ENOTCONN, as the kernel says);
        nor has a connection still in its handshake (EAGAIN, as for a kernel socket)."""
        if self._mip_bound is not None:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        if self._mip_pending is not None and not self._mip_settled():
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return self._mip_udp

    def sendto(self, data: Any, *args: Any) -> int:
        if len(args) not in (1, 2):
            return super().sendto(data, *args)  # the stdlib's TypeError
        flags, address = (0, args[0]) if len(args) == 1 else args
        address = _text_host(address)
        udp = self._mip_datagrams()
        if udp is None:
            if not (self._mip_of(socket.SOCK_DGRAM) and self._mip_reaches(address)):
                return super().sendto(data, *args)
            udp = self._mip_open_udp()
        _no_flags_but_dontwait(flags)
        return int(udp.sendto(data, (address[0], _port(address, "sendto"))))

    def send(self, data: Any, flags: int = 0) -> int:
        udp = self._mip_datagrams()
        if udp is None:
            return super().send(data, flags)
        _no_flags_but_dontwait(flags)
        return int(udp.send(data))

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._mip_datagrams() is None:
            return super().sendall(data, flags)
        self.send(data, flags)
        return None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        udp = self._mip_datagrams()
        if udp is None:
            return super().recv(bufsize, flags)
        return bytes(udp.recv(bufsize, flags))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        udp = self._mip_datagrams()
        if udp is None:
            return super().recv_into(buffer, nbytes, flags)
        return int(udp.recv_into(buffer, nbytes, flags))

    def recvfrom(self, bufsize: int, flags: int = 0) -> Any:
        udp = self._mip_datagrams()
        if udp is None:
            return super().recvfrom(bufsize, flags)
        return udp.recvfrom(bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> Any:
        udp = self._mip_datagrams()
        if udp is None:
            return super().recvfrom_into(buffer, nbytes, flags)
        return udp.recvfrom_into(buffer, nbytes, flags)

    def sendmsg(self, *args: Any) -> int:
        if self._mip_datagrams() is not None:
            raise OSError(errno.EOPNOTSUPP, "sendmsg() on a stack UDP socket: use sendto()")
        return super().sendmsg(*args)

    def recvmsg(self, *args: Any) -> Any:
        if self._mip_datagrams() is not None:
            raise OSError(errno.EOPNOTSUPP, "recvmsg() on a stack UDP socket: use recvfrom()")
        return super().recvmsg(*args)

    def recvmsg_into(self, *args: Any) -> Any:
        if self._mip_datagrams() is not None:
            raise OSError(errno.EOPNOTSUPP, "recvmsg_into() on a stack UDP socket: use recvfrom_into()")
        return super().recvmsg_into(*args)

    def settimeout(self, value: float | None) -> None:
        super().settimeout(value)
        if self._mip_udp is not None:
            self._mip_udp.settimeout(value)

    def setblocking(self, flag: bool) -> None:
        super().setblocking(flag)
        if self._mip_udp is not None:
            self._mip_udp.setblocking(flag)

    # ---- names, options, close

    def getsockname(self) -> Any:
        if self._mip_bound is not None:
            return self._mip_bound
        if self._mip_udp is not None:
            return self._mip_udp.getsockname()
        return super().getsockname()

    def getpeername(self) -> Any:
        if self._mip_udp is not None:
            return self._mip_udp.getpeername()
        if self._mip_bound is not None:  # a listener's descriptor is a readiness pipe's
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        if self._mip_pending is not None and not self._mip_settled():
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        return super().getpeername()

    def _mip_kept(self, level: int, optname: int) -> bool:
        """An option to keep until the stack socket it belongs to exists: a TCP
        connection's before ``connect()`` or a listener's for what it accepts, a UDP
        socket's before it opens."""
        if self._mip_bound is not None or (self._mip_of(socket.SOCK_STREAM) and self._mip_conn is None):
            return bridge.is_stack_option(level, optname)
        return self._mip_of(socket.SOCK_DGRAM) and self._mip_udp is None and (level, optname) in _UDP_OPTIONS

    def setsockopt(self, level: int, optname: int, value: Any, *args: Any) -> None:
        option = (level, optname)
        struct = option == (socket.SOL_SOCKET, socket.SO_LINGER) or option in _UDP_STRUCT_OPTIONS
        if args or not (isinstance(value, int) or struct):
            return super().setsockopt(level, optname, value, *args)
        if self._mip_udp is not None and (level, optname) in _UDP_OPTIONS:
            self._mip_udp.setsockopt(level, optname, value)
            return None
        if self._mip_kept(level, optname):
            self._mip_options = (*self._mip_options, (level, optname, value))
            if self._mip_backlog is not None or option in _UDP_STRUCT_OPTIONS:
                # The descriptor is the listener's readiness now; or a group joined on the
                # kernel's socket would be the host's membership, not the stack's.
                return None
        return super().setsockopt(level, optname, value)

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        so_error = (level, optname) == (socket.SOL_SOCKET, socket.SO_ERROR)
        if self._mip_pending is not None and so_error and not args:
            # How asyncio learns that a non-blocking connect() is over: 0, or its error.
            try:
                self._mip_settled()
            except OSError as e:
                return e.errno
            return 0
        if not args:
            if self._mip_udp is not None and (level, optname) in _UDP_OPTIONS:
                return self._mip_udp.getsockopt(level, optname)
            kept = [v for (lv, name, v) in self._mip_options if (lv, name) == (level, optname)]
            if self._mip_backlog is not None and kept:
                return kept[-1]
        return super().getsockopt(level, optname, *args)

    def _mip_answers(self, level: int, optname: int) -> bool:
        if (level, optname) == (socket.SOL_SOCKET, socket.SO_ERROR):
            return self._mip_pending is not None
        if self._mip_udp is not None:
            return (level, optname) in _UDP_OPTIONS
        return (self._mip_backlog is not None and self._mip_kept(level, optname)) or super()._mip_answers(
            level, optname
        )

    def close(self) -> None:
        listener, self._mip_listener = self._mip_listener, None
        udp, self._mip_udp = self._mip_udp, None
        pending, self._mip_pending = self._mip_pending, None
        for stack_socket in (listener, udp):
            if stack_socket is not None:
                stack_socket.close()
        if pending is not None and pending.state in ("SYN_SENT", "SYN_RECEIVED"):
            # Closed while connecting: the attempt stops, as the kernel's does. Connected
            # already (the program had not asked yet), it closes as any connection does.
            pending.abort()
        super().close()


def routed_socket_class(stack: Any, route: Callable[[str], bool]) -> type[RoutedSocket]:
    """A ``socket.socket`` class whose TCP and UDP go through ``stack`` where ``route(ip)``
    holds (and servers on the wildcard address or the stack's own)."""
    attributes = {"_mip_stack": stack, "_mip_routes": staticmethod(route)}
    return type("StackRoutedSocket", (RoutedSocket,), attributes)
