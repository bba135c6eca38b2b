"""The drop-in: unmodified client programs and server programs through the stack."""

from __future__ import annotations

import array
import errno
import hashlib
import http.server
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PEER_PY, STACK_CIDR, STACK_IP, Peer
from helpers import linux_lab, stop
from peer import pattern

import mipfast.bridge
from mipfast.patch import patched

HTTP_PEER = str(Path(__file__).resolve().parent / "http_peer.py")

CLIENT = """\
import sys
import requests
r = requests.get(sys.argv[1], timeout=10)
print(r.status_code, r.text)
"""


@linux_lab  # peer.test by dnsmasq
def test_an_unmodified_requests_script_runs_through_the_stack(lab, certs, tmp_path):
    chain, key = certs.files["peer.test"]
    plain = Peer(lab, HTTP_PEER, "9480")
    tls = Peer(lab, HTTP_PEER, "9481", chain, key)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    try:
        for url in ("http://peer.test:9480/conn", "https://peer.test:9481/conn"):
            r = subprocess.run(
                [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", STACK_CIDR]
                + ["--dns", lab.peer_ip, str(script), url],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "REQUESTS_CA_BUNDLE": certs.ca_file},
            )
            assert r.returncode == 0, r.stderr
            status, client = r.stdout.split()
            assert status == "200"
            assert client.startswith(f"{STACK_IP}:"), "the kernel server saw the stack's address"
    finally:
        plain.stop()
        tls.stop()


def test_patched_sockets_in_process(lab, peer, stack):
    peer(PEER_PY, "echo", "9482")
    with patched(stack):
        s = socket.create_connection((lab.peer_ip, 9482), timeout=10)
        assert isinstance(s, socket.socket) and s.family == socket.AF_INET
        assert s.getsockname()[0] == STACK_IP and s.getpeername() == (lab.peer_ip, 9482)
        # As the kernel's sockets: not inherited by programs it starts, and with its timeout.
        assert not s.get_inheritable() and s.gettimeout() == 10
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1, "set on the stack connection"
        data = pattern(1 << 20)
        threading.Thread(target=s.sendall, args=(data,)).start()
        got = bytearray()
        while len(got) < len(data):
            got += s.recv(1 << 16)
        assert got == data
        s.close()
        tuned = socket.socket()
        tuned.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # before connect(), as usual
        tuned.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tuned.connect((lab.peer_ip, 9482))
        assert not tuned.get_inheritable() and tuned.getblocking(), "blocking, as it was made"
        # The stack connection's values (a kernel socket would say twice the buffer).
        assert tuned.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 1 << 16
        assert tuned.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        tuned.close()
        named = socket.socket()  # a host given as bytes, as the stdlib's socket takes it
        named.connect((lab.peer_ip.encode(), 9482))
        assert named.getsockname()[0] == STACK_IP and named.getpeername() == (lab.peer_ip, 9482)
        named.close()
        local = socket.socket()  # loopback is not routed
        assert local.connect_ex(("127.0.0.1", 9)) != 0
        local.close()
    assert socket.socket is not type(s), "the patch is undone"


def test_a_blocking_patched_socket_reads_and_writes_its_connection_itself(lab, peer, stack):
    """A blocking socket's plain sends and reads skip its bridge (the caller runs the
    stack, no hop through the driver), and stay in order with what goes through its
    descriptor: C code's writes and reads of it, an end of stream not yet passed on.
    Until something needs the descriptor, the socket has no bridge at all."""
    peer(PEER_PY, "echo", "9488")
    with patched(stack):
        s = socket.create_connection((lab.peer_ip, 9488), timeout=10)
        buffer = bytearray(8)
        for i in range(50):
            s.sendall(b"%03d" % i)
            assert s.recv(3) == b"%03d" % i
        assert stack.tcp_info["bridges"] == 0, "plain calls need no bridge"
        s.sendall(b"early")
        time.sleep(0.3)  # the echo waits in the connection, not yet read
        assert select.select([s], [], [], 10)[0], "the descriptor, once needed, shows it"
        assert stack.tcp_info["bridges"] == 1
        assert os.read(s.fileno(), 100) == b"early"
        before = stack.tcp_info
        for i in range(200):
            s.sendall(b"%03d" % i)
            if i % 2:
                assert s.recv(3) == b"%03d" % i
            else:
                assert s.recv_into(buffer, 3) == 3 and buffer[:3] == b"%03d" % i
        after = stack.tcp_info
        assert after["bridge_direct_sends"] - before["bridge_direct_sends"] >= 150
        # (A reply the driver took before the read began waits in the descriptor: read there.)
        assert after["bridge_direct_reads"] - before["bridge_direct_reads"] >= 20
        # Mixed with the descriptor's own I/O (what the ssl module or sendfile do): in order.
        stream = pattern(1 << 20)
        sent = bytearray()
        got = bytearray()
        for i in range(300):
            chunk = stream[len(sent) : len(sent) + 1 + i * 37 % 3000]
            if i % 3 == 0:
                os.write(s.fileno(), chunk)
            else:
                s.sendall(chunk)
            sent += chunk
            if i % 2 == 0:
                assert select.select([s], [], [], 10)[0], "the echo shows on the descriptor"
                got += os.read(s.fileno(), 4096)
            else:
                got += s.recv(4096)
        while len(got) < len(sent):
            got += s.recv(1 << 16)
        assert got == sent, "every byte back, in order"
        # Buffers of other formats, as the stdlib takes them.
        ints = array.array("i", [1, 2, 3, 4])
        s.sendall(ints)
        into = array.array("i", [0] * 4)
        got_bytes = s.recv_into(into)  # a buffer of ints, as the descriptor's call takes it
        while got_bytes < 16:
            got_bytes += s.recv_into(memoryview(into).cast("B")[got_bytes:])
        assert into == ints
        for bad in (lambda: s.recv(-1), lambda: s.recv_into(bytearray(4), 10)):
            try:
                bad()
                raise AssertionError("a bad size was taken")
            except ValueError:
                pass  # as the stdlib says
        # A wait that runs out is the socket's timeout, and the socket goes on.
        s.settimeout(0.3)
        try:
            s.recv(10)
            raise AssertionError("nothing came, yet recv returned")
        except TimeoutError:
            pass
        s.settimeout(10)
        s.sendall(b"on")
        assert s.recv(2) == b"on"
        # shutdown(SHUT_RD) from another thread ends a read waiting on the connection.
        other = socket.create_connection((lab.peer_ip, 9488), timeout=10)
        ended: list[bytes] = []
        reader = threading.Thread(target=lambda: ended.append(other.recv(10)))
        reader.start()
        time.sleep(0.2)
        other.shutdown(socket.SHUT_RD)
        reader.join(5)
        assert ended == [b""], "the waiting read returned at the shutdown, not at its timeout"
        other.close()
        # After shutdown(SHUT_WR), a send fails as on a kernel socket, and reading goes on.
        s.sendall(b"last")
        s.shutdown(socket.SHUT_WR)
        try:
            s.sendall(b"too late")
            raise AssertionError("sent after shutdown")
        except BrokenPipeError:
            pass
        rest = b""
        while chunk := s.recv(100):
            rest += chunk
        assert rest == b"last", "the echo, then the peer's end of stream"
        s.close()
        try:
            s.sendall(b"closed")
            raise AssertionError("sent on a closed socket")
        except OSError as e:
            assert e.errno == errno.EBADF


def test_a_blocking_patched_client_without_its_bridge_closes_shuts_and_forks_as_a_socket(lab, peer, stack):
    """A blocking client's socket has no bridge until its descriptor is needed: its close()
    and shutdown() reach the connection itself, and a fork makes the bridge first, so that
    the child (which cannot run this process's stack) writes through its descriptor."""
    peer(PEER_PY, "echo", "9489")

    def state_of(sock_name: tuple[str, int]) -> str | None:
        return next((c["state"] for c in stack.connections() if c["local"] == sock_name), None)

    with patched(stack):
        closed = socket.create_connection((lab.peer_ip, 9489), timeout=10)
        closed.sendall(b"ping")
        assert closed.recv(4) == b"ping"
        assert f"laddr={closed.getsockname()}" in repr(closed), "a repr does not need the bridge"
        name = closed.getsockname()
        closed.close()  # our FIN, then the echo's: TIME-WAIT here, as after a kernel socket's close
        deadline = time.monotonic() + 5
        while state_of(name) not in ("TIME_WAIT", None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state_of(name) in ("TIME_WAIT", None), state_of(name)
        half = socket.create_connection((lab.peer_ip, 9489), timeout=10)
        half.sendall(b"last words")
        half.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := half.recv(100):
            echoed += chunk
        assert echoed == b"last words", "the echo, then its end of stream after ours"
        half.close()
        assert stack.tcp_info["bridges"] == 0, "none of it needed a bridge"
        forked = socket.create_connection((lab.peer_ip, 9489), timeout=10)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                forked.sendall(b"from the child")
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        assert stack.tcp_info["bridges"] == 1, "the fork made the bridge"
        got = b""
        while len(got) < 14:
            got += forked.recv(100)
        assert got == b"from the child"
        forked.close()


def test_socketserver_http_server_served_through_the_stack(lab, stack, tmp_path):
    (tmp_path / "index.html").write_text("served by http.server through mipfast\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("", 0), Quiet, bind_and_activate=False)
    server.socket = mipfast.bridge.server_socket(stack, 8080)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        for _ in range(3):
            r = lab.run("curl", "-sS", "--max-time", "10", f"http://{STACK_IP}:8080/index.html", timeout=30)
            assert r.stdout == "served by http.server through mipfast\n"
    finally:
        server.shutdown()
        server.server_close()


ASGI_APP = """\
async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = f"asgi says hi to {scope['client'][0]}\\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def test_an_unmodified_uvicorn_app_is_forwarded_through_the_stack(lab, stack, tmp_path):
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    uvicorn = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "--host", "127.0.0.1"]
        + ["--port", "18431", "--log-level", "warning", "asgi_app:app"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", 18431), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        with mipfast.bridge.forward(stack, 8000, ("127.0.0.1", 18431)):
            r = lab.run("curl", "-sS", "--max-time", "10", f"http://{STACK_IP}:8000/", timeout=30)
            assert r.stdout == "asgi says hi to 127.0.0.1\n"
    finally:
        stop(uvicorn, signal.SIGTERM, 10, read=False)


def _listening(stack) -> dict[int, int]:
    """The stack's listening ports and their backlogs."""
    return {c["local"][1]: c["backlog"] for c in stack.connections() if c["backlog"] is not None}


def _echo_until_eof(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1 << 16):
            conn.sendall(data)


def test_a_patched_server_socket_listens_on_the_stack(lab, peer, stack):
    with patched(stack):
        server = socket.create_server(("", 0))
        local = socket.create_server(("127.0.0.1", 0))
        small = socket.socket()
        small.bind((STACK_IP, 0))
        small.listen(7)
    try:
        host, port = server.getsockname()
        assert (host, port > 0) == ("0.0.0.0", True)
        small_ip, small_port = small.getsockname()
        assert small_ip == STACK_IP
        assert _listening(stack)[small_port] == 7, "listen()'s backlog is the stack listener's"
        small.close()
        assert port in _listening(stack) and small_port not in _listening(stack)
        assert local.getsockname()[0] == "127.0.0.1", "loopback stays the kernel's"
        socket.create_connection(local.getsockname(), timeout=5).close()
        # Passed on to accepted connections, as a kernel listener's options are.
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        server.setblocking(False)
        assert select.select([server], [], [], 0) == ([], [], [])
        for read in (lambda: server.recv(1), lambda: server.send(b"x")):
            try:
                read()
                raise AssertionError("a listening socket moved data")
            except OSError as e:
                assert e.errno == errno.ENOTCONN, e
        try:
            server.accept()
            raise AssertionError("accept() on an empty non-blocking listener returned")
        except BlockingIOError:
            pass

        n = 1 << 20
        client = peer(PEER_PY, "client", STACK_IP, str(port), str(n), ready=None)
        readable, _, _ = select.select([server], [], [], 30)
        assert readable == [server], "the listening socket's descriptor shows the waiting connection"
        conn, address = server.accept()
        assert isinstance(conn, socket.socket) and address[0] == lab.peer_ip
        assert conn.getsockname() == (STACK_IP, port) and conn.getpeername() == address
        assert conn.gettimeout() is None, "an accepted socket takes the default timeout"
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        direct = (stack.tcp_info["bridge_direct_reads"], stack.tcp_info["bridge_direct_sends"])
        _echo_until_eof(conn)
        # A server's socket keeps its bridge (what a handler writes in pieces leaves together).
        assert (stack.tcp_info["bridge_direct_reads"], stack.tcp_info["bridge_direct_sends"]) == direct
        got, digest = client.result().split()
        assert (int(got), digest) == (n, hashlib.sha256(pattern(n)).hexdigest())
    finally:
        server.close()
        local.close()
    assert port not in _listening(stack), "closing the socket closes the stack's listener"


def _curl_until_served(lab, url: str, proc: subprocess.Popen, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while True:
        r = lab.run("curl", "-sS", "--max-time", "5", url, check=False, timeout=30)
        if r.returncode == 0:
            return r.stdout
        assert proc.poll() is None, f"the server exited: {proc.communicate()}"
        assert time.monotonic() < deadline, f"not served: {r.stderr}"
        time.sleep(0.2)


def _patched_module(lab, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", STACK_CIDR, "-m", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@linux_lab
def test_an_unmodified_uvicorn_app_serves_through_the_patch(lab, tmp_path):
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    server = _patched_module(
        lab, "uvicorn", "--app-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "8000", "asgi_app:app"
    )
    try:
        # asyncio's create_server on the stack: the app sees the peer's own address.
        assert (
            _curl_until_served(lab, f"http://{STACK_IP}:8000/", server) == f"asgi says hi to {lab.peer_ip}\n"
        )
    finally:
        stop(server, signal.SIGTERM, 20)


def test_uvloop_under_the_patch_is_asyncios_loop_which_the_patch_routes(lab, peer, stack):
    """uvloop opens its sockets in C, out of the patch's reach (uvicorn takes it whenever it is
    installed: the test above runs it so). Under the patch ``import uvloop`` gives asyncio's own
    loop in uvloop's names; after it, uvloop again."""
    import asyncio
    import importlib

    import mipfast.asyncio

    peer(PEER_PY, "echo", "9479")

    async def main() -> bytes:
        reader, writer = await asyncio.open_connection(lab.peer_ip, 9479)
        assert isinstance(writer.transport, mipfast.asyncio.StackTransport)
        writer.write(b"through the stand-in\n")
        line = await reader.readline()
        writer.close()
        return line

    with patched(stack):
        uvloop = importlib.import_module("uvloop")
        assert uvloop.STANDS_IN and uvloop.__version__ == metadata_version("uvloop")
        loop = uvloop.new_event_loop()
        assert isinstance(loop, asyncio.SelectorEventLoop)
        loop.close()
        assert uvloop.run(main()) == b"through the stand-in\n"
    real = importlib.import_module("uvloop")
    assert not hasattr(real, "STANDS_IN") and real.Loop is not asyncio.SelectorEventLoop


def metadata_version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


@linux_lab
def test_python_m_http_server_serves_through_the_patch(lab, tmp_path):
    (tmp_path / "index.html").write_text("http.server, unmodified, through mipfast\n")
    # No --bind: http.server binds the first passive answer of getaddrinfo, which is IPv4's.
    server = _patched_module(lab, "http.server", "8081", "--directory", str(tmp_path))
    try:
        for _ in range(2):
            page = _curl_until_served(lab, f"http://{STACK_IP}:8081/index.html", server)
            assert page == "http.server, unmodified, through mipfast\n"
    finally:
        stop(server, signal.SIGTERM, 20)


UDP_SEND = """
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""


def _udp_ports(stack) -> set[int]:
    return {u["local"][1] for u in stack.udp_sockets()}


def test_patched_udp_sockets_go_through_the_stack(lab, peer, stack):
    peer(PEER_PY, "udp-echo", "9484")
    echo = (lab.peer_ip, 9484)
    with patched(stack):
        assert socket.getaddrinfo(lab.peer_ip, 9484, type=socket.SOCK_DGRAM) == [
            (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", echo)
        ]
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.settimeout(5)
        datagram = pattern(3000)  # fragmented both ways
        assert client.sendto(datagram, echo) == len(datagram)
        assert client.recvfrom(65535) == (datagram, echo)
        assert client.getsockname()[1] in _udp_ports(stack), "a stack UDP socket"
        assert client.sendto(b"bytes host", (lab.peer_ip.encode(), 9484)) == len(b"bytes host")
        assert client.recvfrom(100) == (b"bytes host", echo)

        connected.settimeout(5)
        connected.connect(echo)
        assert connected.getpeername() == echo
        try:
            connected.sendmsg([b"x"])
            raise AssertionError("sendmsg() wrote into the readiness descriptor")
        except OSError as e:
            assert e.errno == errno.EOPNOTSUPP
        connected.send(b"connected")
        buffer = bytearray(64)
        assert connected.recv_into(buffer) == len(b"connected") and buffer.startswith(b"connected")

        server.bind(("", 0))
        port = server.getsockname()[1]
        assert port in _udp_ports(stack)
        server.setblocking(False)
        assert select.select([server], [], [], 0)[0] == []
        try:
            server.recvfrom(100)
            raise AssertionError("recvfrom() on an empty non-blocking socket returned")
        except BlockingIOError:
            pass
        lab.run(sys.executable, "-c", UDP_SEND, STACK_IP, str(port), "to the server")
        assert select.select([server], [], [], 5)[0] == [server], "the descriptor shows the datagram"
        data, source = server.recvfrom(100)
        assert data == b"to the server" and source[0] == lab.peer_ip

        local.bind(("127.0.0.1", 0))  # loopback stays the kernel's
        local.settimeout(5)
        local.sendto(b"to myself", local.getsockname())
        assert local.recvfrom(100)[0] == b"to myself"
        assert local.getsockname()[1] not in _udp_ports(stack)
    finally:
        for s in (client, connected, server, local):
            s.close()
    assert not _udp_ports(stack), "closing the sockets closed the stack's"


GROUP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[4]))
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""


def test_a_patched_multicast_receiver_joins_on_the_stack(lab, stack):
    """The usual receiver (join, bind the group's address, read) through the patch: the group is
    joined on the stack, also when asked before bind(), and not on the host's kernel."""
    group = "239.77.2.2"
    mreq = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
    with patched(stack):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver:
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)  # before bind: kept
        receiver.bind((group, 9055))
        assert receiver.getsockname()[1] in _udp_ports(stack), "a stack UDP socket"
        receiver.settimeout(10)
        lab.run(sys.executable, "-c", GROUP_SEND, group, "9055", "to the group", lab.peer_ip)
        data, source = receiver.recvfrom(100)
        assert data == b"to the group" and source[0] == lab.peer_ip
        assert receiver.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
        with pytest.raises(OSError) as e:
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        assert e.value.errno == errno.EADDRINUSE, "joined on the stack already"
        igmp = Path("/proc/net/igmp")  # this process's kernel memberships (Linux), by group in hex
        if igmp.exists():
            assert socket.inet_aton(group)[::-1].hex().upper() not in igmp.read_text(), "not the host's"


def test_an_asyncio_datagram_endpoint_through_the_patch(lab, peer, stack):
    import asyncio

    peer(PEER_PY, "udp-echo", "9485")

    class Echoed(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.replies: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr) -> None:
            self.replies.put_nowait((data, addr))

    async def exchange(**where) -> list[tuple[bytes, object]]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(Echoed, **where)
        address = None if "remote_addr" in where else (lab.peer_ip, 9485)
        try:
            got = []
            for i in range(3):
                transport.sendto(f"datagram {i}".encode(), address)
                got.append(await asyncio.wait_for(protocol.replies.get(), 5))
            assert transport.get_extra_info("socket").getsockname()[1] in _udp_ports(stack)
            return got
        finally:
            transport.close()

    expected = [(f"datagram {i}".encode(), (lab.peer_ip, 9485)) for i in range(3)]
    with patched(stack):
        assert asyncio.run(exchange(remote_addr=(lab.peer_ip, 9485))) == expected
        # Neither bound nor connected: the transport watches the socket before its first
        # sendto opens the stack socket.
        assert asyncio.run(exchange(family=socket.AF_INET)) == expected


@linux_lab  # lab.mipfast by dnsmasq, in a namespace the host's kernel has no route to
def test_dnspython_unmodified_resolves_through_the_patch(lab, stack):
    import dns.resolver

    with patched(stack):
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [lab.peer_ip]
        resolver.lifetime = 5
        answer = resolver.resolve("lab.mipfast", "A")
    assert [r.address for r in answer] == [lab.peer_ip]


def test_asyncio_connects_through_the_patch_without_blocking_the_loop(lab, peer):
    import asyncio

    peer(PEER_PY, "echo", "9486")

    async def open_socket(address: tuple[str, int]) -> socket.socket:
        """A patched socket connected as aiohttp connects its own (a bridge, not the
        stack's own transport, which ``loop.create_connection`` gives)."""
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def exchange(i: int, ticks: list[int]) -> tuple[bytes, int]:
        if i % 2:
            reader, writer = await asyncio.open_connection(sock=await open_socket((lab.peer_ip, 9486)))
        else:
            reader, writer = await asyncio.open_connection(lab.peer_ip, 9486)
        during = ticks[0]
        writer.write(f"stream {i}\n".encode())
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line, during

    async def main() -> list[tuple[bytes, int]]:
        ticks = [0]
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks[0] += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            return await asyncio.gather(*(exchange(i, ticks) for i in range(6)))
        finally:
            stop.set()
            await task

    async def refused() -> None:
        await asyncio.open_connection(lab.peer_ip, 9)

    async def given_up() -> None:
        await asyncio.wait_for(asyncio.open_connection(lab.peer_ip, 9486), 0.02)

    async def given_up_on_a_socket() -> None:
        await asyncio.wait_for(open_socket((lab.peer_ip, 9486)), 0.02)

    # 50 ms each way on the stack's own device: every handshake takes 100 ms.
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, faults={"delay_ms": 50}) as stack, patched(stack):
        results = asyncio.run(main())
        try:
            asyncio.run(refused())
            raise AssertionError("a connection to a closed port was made")
        except ConnectionRefusedError:
            pass
        # A connect given up on (its socket closed mid-handshake) stops there, as the kernel's.
        for attempt in (given_up, given_up_on_a_socket) * 3:
            try:
                asyncio.run(attempt())
                raise AssertionError("a 100 ms handshake within 20 ms")
            except (asyncio.TimeoutError, TimeoutError):
                pass
        connecting = [c for c in stack.connections() if c["state"] in ("SYN_SENT", "ESTABLISHED")]
        assert connecting == [] and stack.tcp_info["bridges"] == 0, connecting
    assert [line for line, _ in results] == [f"stream {i}\n".encode() for i in range(6)]
    # The loop ran on during the handshakes (a connect() that blocked would have held
    # it for all five, one after another, and the ticker with it).
    assert min(during for _, during in results) > 100, results


def test_loop_sock_connect_of_a_patched_socket_makes_no_bridge(lab, peer, stack):
    """asyncio's ``sock_connect`` (aiohttp's way in) connects a patched socket with no bridge:
    the loop waits for the stack's handshake itself. The loop's socket calls go on working
    (``sock_recv`` makes the bridge once it waits on the descriptor); a refusal raises as the
    kernel's does and leaves the socket to connect again; a socket the loop already watched
    gets its bridge at once, so that the watch sees the connection."""
    import asyncio

    peer(PEER_PY, "echo", "9499")

    def to_port(port: int) -> list[str]:
        return [c["state"] for c in stack.connections() if c["remote"] == (lab.peer_ip, port)]

    async def line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
        got = b""
        while not got.endswith(b"\n"):
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 100), 10)
            assert chunk, "end of stream before the echo"
            got += chunk
        return got

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (lab.peer_ip, 9))
                raise AssertionError("connected to a closed port")
            except ConnectionRefusedError:
                pass
            assert to_port(9) == []
            await loop.sock_connect(sock, (lab.peer_ip, 9499))  # again, as a kernel socket may
            assert stack.tcp_info["bridges"] == 0 and to_port(9499) == ["ESTABLISHED"]
            assert sock.getpeername() == (lab.peer_ip, 9499)
            await loop.sock_sendall(sock, b"no bridge\n")  # room at once: the connection takes it
            assert stack.tcp_info["bridges"] == 0
            assert await line(loop, sock) == b"no bridge\n"
            await loop.sock_sendall(sock, b"then through the bridge\n")
            assert await line(loop, sock) == b"then through the bridge\n"
        # The driver takes the closed socket's bridge down in its own time.
        deadline = time.monotonic() + 5
        while stack.tcp_info["bridges"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert stack.tcp_info["bridges"] == 0
        with socket.socket() as sock:
            sock.setblocking(False)
            woken = asyncio.Event()
            loop.add_reader(sock, woken.set)  # (an unconnected socket's descriptor reads as hung up)
            await loop.sock_connect(sock, (lab.peer_ip, 9499))
            assert stack.tcp_info["bridges"] == 1
            woken.clear()
            assert sock.send(b"watched\n") == 8
            await asyncio.wait_for(woken.wait(), 10)  # the registration made before the connect
            loop.remove_reader(sock)
            assert await line(loop, sock) == b"watched\n"

    with patched(stack):
        asyncio.run(main())
    deadline = time.monotonic() + 5
    while stack.tcp_info["bridges"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stack.tcp_info["bridges"] == 0


def test_a_selector_keeps_watching_a_patched_socket_through_its_non_blocking_connect(lab, peer):
    """As Twisted's epoll reactor and hand-written loops do: register the connecting
    socket, learn the outcome from SO_ERROR when it turns writable, then change what the
    same registration waits for. epoll and kqueue register the open description, so the
    descriptor must not be swapped once the program holds it."""
    import selectors

    peer(PEER_PY, "echo", "9487")
    # 50 ms each way on the stack's own device: every handshake takes 100 ms.
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, faults={"delay_ms": 50}) as stack, patched(stack):
        with selectors.DefaultSelector() as selector, socket.socket() as sock:
            sock.setblocking(False)
            assert sock.connect_ex((lab.peer_ip, 9487)) == errno.EINPROGRESS
            assert not sock.get_inheritable() and not sock.getblocking(), "as it was made"
            selector.register(sock, selectors.EVENT_WRITE)
            assert selector.select(0.02) == [], "writable while its handshake is under way"
            ready = selector.select(5)
            assert [events for _, events in ready] == [selectors.EVENT_WRITE]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            assert sock.connect_ex((lab.peer_ip, 9487)) == errno.EISCONN  # Twisted asks so
            assert sock.getpeername() == (lab.peer_ip, 9487)
            selector.modify(sock, selectors.EVENT_READ)  # FileNotFoundError once swapped
            sock.send(b"through one registration\n")
            got = b""
            while not got.endswith(b"\n"):
                assert selector.select(5), "the echo never showed"
                got += sock.recv(100)
            assert got == b"through one registration\n"

        with selectors.DefaultSelector() as selector, socket.socket() as sock:
            sock.setblocking(False)
            assert sock.connect_ex((lab.peer_ip, 9)) == errno.EINPROGRESS
            selector.register(sock, selectors.EVENT_WRITE)
            assert selector.select(5), "a refused connect shows, as the kernel's does"
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED


TWISTED_CLIENT = """
import sys
from twisted.internet import reactor, protocol

class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"twisted, unmodified\\n")
    def dataReceived(self, data):
        print("got", data.decode().strip(), flush=True)
        self.transport.loseConnection()
    def connectionLost(self, reason):
        reactor.stop()

class Factory(protocol.ClientFactory):
    protocol = Client
    def clientConnectionFailed(self, connector, reason):
        print("failed", reason.getErrorMessage(), flush=True)
        reactor.stop()

reactor.connectTCP(sys.argv[1], int(sys.argv[2]), Factory(), timeout=10)
reactor.run()
"""

TWISTED_SERVER = """
from twisted.internet import reactor, protocol

class Greeter(protocol.Protocol):
    def dataReceived(self, data):
        peer = self.transport.getPeer().host
        self.transport.write(b"twisted heard " + data.strip() + b" from " + peer.encode() + b"\\n")
        self.transport.loseConnection()

factory = protocol.Factory.forProtocol(Greeter)
print("listening", reactor.listenTCP(9489, factory).getHost().port, flush=True)
reactor.run()
"""


@linux_lab  # Twisted's default reactor here is epoll's, which keeps the descriptions it watches
def test_twisted_client_and_server_run_through_the_patch(lab, peer, tmp_path):
    peer(PEER_PY, "echo", "9488")
    (tmp_path / "client.py").write_text(TWISTED_CLIENT)
    (tmp_path / "server.py").write_text(TWISTED_SERVER)
    patch = [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", STACK_CIDR]
    client = subprocess.run(
        [*patch, str(tmp_path / "client.py"), lab.peer_ip, "9488"], capture_output=True, text=True, timeout=60
    )
    assert client.stdout == "got twisted, unmodified\n", client.stderr[-2000:]

    server = subprocess.Popen(
        [*patch, str(tmp_path / "server.py")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline() == "listening 9489\n", server.stderr
        for i in range(3):
            ask = (
                f"import socket; s = socket.create_connection(('{STACK_IP}', 9489), timeout=10);"
                f"s.sendall(b'hello {i}'); print(s.makefile().readline(), end='')"
            )
            answer = lab.run(sys.executable, "-c", ask).stdout
            assert answer == f"twisted heard hello {i} from {lab.peer_ip}\n"
    finally:
        stop(server, signal.SIGTERM, 20)


def test_a_client_bound_before_connect_leaves_from_its_port(lab, peer, stack):
    """``source_address`` (http.client, urllib3, smtplib) and asyncio's ``local_addr`` bind a
    client socket before it connects: the connection leaves from the bound port, and nothing
    is left listening on it."""
    import asyncio

    peer(PEER_PY, "echo", "9490")

    def leaving_from(port: int) -> bool:
        states = {(c["state"], c["local"][1]) for c in stack.connections()}
        return ("ESTABLISHED", port) in states and not any(state == "LISTEN" for state, _ in states)

    with patched(stack):
        for source in (("0.0.0.0", 0), ("", 40124), (STACK_IP, 0)):
            with socket.create_connection((lab.peer_ip, 9490), timeout=10, source_address=source) as sock:
                port = sock.getsockname()[1]
                assert source[1] in (0, port), (source, port)
                sock.sendall(b"bound first\n")
                assert sock.recv(100) == b"bound first\n"
                assert leaving_from(port), stack.connections()

        async def bound_first() -> int:
            reader, writer = await asyncio.open_connection(lab.peer_ip, 9490, local_addr=("0.0.0.0", 0))
            port = writer.get_extra_info("sockname")[1]
            writer.write(b"asyncio, bound first\n")
            assert await reader.readline() == b"asyncio, bound first\n"
            assert leaving_from(port), stack.connections()
            writer.close()
            await writer.wait_closed()
            return port

        assert asyncio.run(bound_first()) > 0


def test_tls_over_a_patched_socket_keeps_its_names_and_options(lab, peer, stack, certs):
    """``wrap_socket`` makes a new ``SSLSocket`` on the bridged descriptor (a socketpair's):
    its names and TCP options are still the stack connection's, as are a ``dup()``'s."""
    import ssl

    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "tls", "echo", "9491", chain, key)
    with patched(stack):
        plain = socket.create_connection((lab.peer_ip, 9491), timeout=10)
        twin = plain.dup()
        assert twin.getpeername() == (lab.peer_ip, 9491)
        twin.close()
        with certs.client_context().wrap_socket(plain, server_hostname="peer.test") as tls:
            assert isinstance(tls, ssl.SSLSocket) and tls.version() is not None
            assert tls.getpeername() == (lab.peer_ip, 9491)
            assert tls.getsockname()[0] == STACK_IP
            port = tls.getsockname()[1]
            assert any(c["local"] == (STACK_IP, port) for c in stack.connections())
            tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert tls.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert tls.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
            tls.sendall(b"through TLS, wrapped after connect\n")
            assert tls.recv(100) == b"through TLS, wrapped after connect\n"


TLS_ASK = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with ctx.wrap_socket(socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10),
                     server_hostname="stack.test") as s:
    s.sendall(b"hello over TLS")
    print(s.recv(200).decode())
"""


def test_a_tls_server_wraps_its_patched_listening_socket(lab, stack, certs):
    """``ctx.wrap_socket(listener, server_side=True)`` (``http.server`` with TLS): the wrapped
    listening socket accepts on the stack and hands out TLS sockets; it hung in a handshake
    on the listener's readiness descriptor before."""
    with patched(stack):
        listener = socket.create_server(("", 9492))
        try:
            listener.getpeername()
            raise AssertionError("a listening socket has a peer")
        except OSError as e:
            assert e.errno == errno.ENOTCONN, e
        server = certs.server_context().wrap_socket(listener, server_side=True)
        server.settimeout(20)
        assert server.getsockname() == ("0.0.0.0", 9492)
        answered: list[str] = []

        def serve() -> None:
            conn, address = server.accept()
            with conn:
                assert conn.getpeername() == address and conn.version() is not None
                conn.sendall(conn.recv(100) + f" from {address[0]}".encode())
            answered.append(address[0])

        thread = threading.Thread(target=serve)
        thread.start()
        answer = lab.run(sys.executable, "-c", TLS_ASK, certs.ca_file, STACK_IP, "9492").stdout
        thread.join(20)
        assert answer == f"hello over TLS from {lab.peer_ip}\n"
        assert answered == [lab.peer_ip]
        server.close()
    assert 9492 not in _listening(stack), "closing the TLS socket closes the stack's listener"


def test_a_dual_stack_server_socket_listens_on_the_stack(lab, stack):
    """An IPv6 socket on ``::`` with ``IPV6_V6ONLY`` off takes IPv4 connections: it listens
    on the stack (IPv4 only), its peers named as IPv4-mapped addresses, as the kernel names
    them. One with ``IPV6_V6ONLY`` on stays the kernel's."""
    with patched(stack):
        server = socket.create_server(("", 9493), family=socket.AF_INET6, dualstack_ipv6=True)
        v6_only = socket.socket(socket.AF_INET6)
        v6_only.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6_only.bind(("::", 9494))
    try:
        assert server.getsockname() == ("::", 9493, 0, 0)
        assert 9493 in _listening(stack) and 9494 not in _listening(stack)
        server.settimeout(20)
        ask = (
            f"import socket; s = socket.create_connection(('{STACK_IP}', 9493), timeout=10);"
            "s.sendall(b'dual'); print(s.recv(100).decode())"
        )
        replies: list[str] = []
        client = threading.Thread(target=lambda: replies.append(lab.run(sys.executable, "-c", ask).stdout))
        client.start()
        conn, address = server.accept()
        with conn:
            assert conn.family == socket.AF_INET6
            assert address[0] == f"::ffff:{lab.peer_ip}" and conn.getpeername() == address
            assert conn.getsockname() == (f"::ffff:{STACK_IP}", 9493, 0, 0)
            conn.sendall(conn.recv(100) + b" stack")
        client.join(20)
        assert replies == ["dual stack\n"]
    finally:
        server.close()
        v6_only.close()
    assert 9493 not in _listening(stack)


#: What the source peer sends a socket taken over from its bridge: more than the bridge's socket holds.
SOURCED = 8 << 20


@linux_lab  # lab.mipfast and peer.test by dnsmasq
def test_asyncio_connections_under_the_patch_get_the_stacks_own_transport(lab, peer, certs):
    """``loop.create_connection`` to a routed address (``asyncio.open_connection``, websockets,
    httpx) gets mipfast's transport, served by the loop itself with no bridge; names resolve
    through the stack, TLS checks the name asked for, ``local_addr`` is the port it leaves
    from. What it cannot serve so (``sock=``, loopback) is asyncio's own, as before."""
    import asyncio

    import mipfast.asyncio

    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "echo", "9495")
    peer(PEER_PY, "tls", "echo", "9496", chain, key)
    peer(PEER_PY, "source", "9497", str(SOURCED))
    peer(PEER_PY, "source", "9483", str(SOURCED))
    local = socket.create_server(("127.0.0.1", 0))

    async def line_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
        writer.write(text)
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    async def read_whole_source(stack: mipfast.Stack, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        assert isinstance(writer.transport, mipfast.asyncio.StackTransport)
        assert stack.tcp_info["bridges"] == 0 and sock.fileno() == -1
        received = await asyncio.wait_for(reader.read(), 30)
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(pattern(SOURCED)).hexdigest()
        writer.close()

    async def main(stack: mipfast.Stack) -> None:
        reader, writer = await asyncio.open_connection("lab.mipfast", 9495)
        assert isinstance(writer.transport, mipfast.asyncio.StackTransport)
        assert stack.tcp_info["bridges"] == 0
        assert writer.get_extra_info("peername") == (lab.peer_ip, 9495)
        assert await line_back(reader, writer, b"native\n") == b"native\n"

        tls = certs.client_context()
        reader, writer = await asyncio.open_connection("peer.test", 9496, ssl=tls)
        assert writer.get_extra_info("ssl_object").server_hostname == "peer.test"
        assert await line_back(reader, writer, b"over TLS\n") == b"over TLS\n"
        try:
            await asyncio.open_connection(lab.peer_ip, 9496, ssl=tls)  # the certificate names peer.test
            raise AssertionError("TLS accepted a certificate for another name")
        except ssl_errors() as e:
            assert "IP address mismatch" in str(e) or "certificate" in str(e), e

        reader, writer = await asyncio.open_connection(lab.peer_ip, 9495, local_addr=("0.0.0.0", 40125))
        assert writer.get_extra_info("sockname") == (STACK_IP, 40125)
        assert await line_back(reader, writer, b"bound\n") == b"bound\n"

        # sock= (aiohttp connects its own sockets with sock_connect, which makes no bridge):
        # the connection goes to our transport with what it had received, in order.
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (lab.peer_ip, 9497))
        assert stack.tcp_info["bridges"] == 0 and sock.getpeername() == (lab.peer_ip, 9497)
        await asyncio.sleep(0.3)  # the source's first bytes wait in the connection
        await read_whole_source(stack, sock)
        # A socket connected otherwise (a blocking connect in the loop's thread) has its bridge:
        # it leaves it for our transport, with what the bridge had received for it.
        sock = socket.create_connection((lab.peer_ip, 9483))
        assert stack.tcp_info["bridges"] == 1
        await asyncio.sleep(0.3)  # the source's first bytes wait in the bridge's socket
        await read_whole_source(stack, sock)

        reader, writer = await asyncio.open_connection(*local.getsockname())  # loopback: the kernel's
        assert writer.get_extra_info("peername") == local.getsockname()
        assert not isinstance(writer.transport, mipfast.asyncio.StackTransport)
        writer.close()
        kernel_socket = socket.create_connection(local.getsockname())  # sock= of the kernel's: asyncio's
        reader, writer = await asyncio.open_connection(sock=kernel_socket)
        assert not isinstance(writer.transport, mipfast.asyncio.StackTransport)
        writer.close()

    def ssl_errors() -> tuple[type[BaseException], ...]:
        import ssl

        return (ssl.SSLError, ssl.CertificateError)

    try:
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, dns=[lab.peer_ip]) as stack, patched(stack):
            asyncio.run(main(stack))
    finally:
        local.close()


AIOHTTP_CLIENT = """
import asyncio, hashlib, sys
import aiohttp

async def main():
    # The transports aiohttp makes, seen at the loop: ``response.connection`` is already
    # None when the whole response came in with its headers (aiohttp released it).
    loop = asyncio.get_running_loop()
    made = []
    create_connection = loop.create_connection

    async def recording_create_connection(*args, **kwargs):
        transport, protocol = await create_connection(*args, **kwargs)
        made.append(type(transport).__name__)
        return transport, protocol

    loop.create_connection = recording_create_connection
    async with aiohttp.ClientSession() as session:
        for path in ("/conn", "/conn", "/bytes/300000"):
            async with session.get(sys.argv[1] + path) as response:
                body = await response.read()
                shown = body.decode() if path == "/conn" else hashlib.sha256(body).hexdigest()
                print(response.status, len(body), shown, len(made), made[-1])

asyncio.run(main())
"""


def test_aiohttp_client_through_the_patch(lab, tmp_path):
    """aiohttp connects its own sockets (``loop.sock_connect``) and hands them to
    ``create_connection(sock=…)``: each leaves its bridge for the stack's own transport,
    kept alive across requests."""
    server = Peer(lab, HTTP_PEER, "9498")
    (tmp_path / "client.py").write_text(AIOHTTP_CLIENT)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", STACK_CIDR]
            + [str(tmp_path / "client.py"), f"http://{lab.peer_ip}:9498"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line.split() for line in r.stdout.splitlines()]
    assert [line[0] for line in lines] == ["200"] * 3
    assert all(line[-1] == "StackTransport" for line in lines), r.stdout
    assert lines[0][-2] == lines[1][-2] == "1", "the second request reuses the first connection"
    first, second = lines[0][2], lines[1][2]
    assert first.startswith(STACK_IP) and first == second, "one kept-alive connection from the stack"
    assert lines[2][1:3] == ["300000", hashlib.sha256(pattern(300000)).hexdigest()]


# The kernel's side over IPv6: a TCP echo and a UDP echo on "::", then "listening".
PEER6 = """
import socket, sys, threading
port = int(sys.argv[1])
tcp = socket.create_server(("::", port), family=socket.AF_INET6)
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.bind(("::", port))
def echo(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
def serve_tcp():
    while True:
        threading.Thread(target=echo, args=(tcp.accept()[0],), daemon=True).start()
threading.Thread(target=serve_tcp, daemon=True).start()
print("listening", flush=True)
while True:
    data, client = udp.recvfrom(65535)
    udp.sendto(data, client)
"""

# Sends "to the group" from the namespace's interface argv[1] to the IPv6 group argv[2], port argv[3].
SEND_TO_GROUP6 = """
import socket, sys
index = socket.if_nametoindex(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.sendto(b"to the group", (sys.argv[2], int(sys.argv[3]), 0, index))
"""

# Connects from the namespace to argv[1] (an IPv6 address with its zone) port argv[2].
CONNECT6 = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    s.sendall(b"six"); print(s.recv(100).decode(), flush=True)
except ConnectionRefusedError:
    print("refused", flush=True)
"""


def test_ipv6_clients_and_servers_through_the_patch(lab, peer):
    """IPv6 through the patch: getaddrinfo of an IPv6 literal and of an AAAA name, a TCP
    client, a UDP socket and an asyncio client to the kernel's link-local address, all on the
    stack; a dual-stack server that names its IPv6 peer as it is, and an IPv4 server that an
    IPv6 peer finds refused, as a kernel's AF_INET server would be."""
    import asyncio

    from helpers import peer_ipv6, wait_peer_address

    with peer_ipv6(lab) as kernel, mipfast.Stack(lab.iface, ip=STACK_CIDR, dns=lab.peer_ip) as stack:
        theirs = kernel["link_local"]
        deadline = time.monotonic() + 5
        while not stack.ipv6_addresses and time.monotonic() < deadline:
            time.sleep(0.05)
        ours = stack.ipv6_addresses[0]
        wait_peer_address(lab, theirs)
        peer("-c", PEER6, "9495")
        with patched(stack):
            stream = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            assert socket.getaddrinfo(theirs, 9495, type=socket.SOCK_STREAM) == [
                (*stream, (theirs, 9495, 0, 0))
            ]
            if "six.mipfast" in getattr(lab, "hosts", {}):  # the lab has DNS, with an AAAA record
                assert socket.getaddrinfo("six.mipfast", 80, type=socket.SOCK_STREAM) == [
                    (*stream, ("fd77:0:0:1::1", 80, 0, 0))
                ]
            conn = socket.create_connection((theirs, 9495), timeout=10)
            udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            member = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            mreq = socket.inet_pton(socket.AF_INET6, "ff12::1234") + bytes(4)
            member.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)  # kept until it opens
            member.bind(("::", 9498))
            dual = socket.create_server(("", 9496), family=socket.AF_INET6, dualstack_ipv6=True)
            v4 = socket.create_server(("", 9497))

            async def echo_over_asyncio() -> bytes:
                reader, writer = await asyncio.open_connection(theirs, 9495)
                writer.write(b"asyncio")
                data = await reader.readexactly(7)
                writer.close()
                return data

            assert asyncio.run(echo_over_asyncio()) == b"asyncio"
        try:
            with conn:
                assert conn.family == socket.AF_INET6
                assert conn.getpeername() == (theirs, 9495, 0, 0) and conn.getsockname()[0] == ours
                remotes = {c["remote"][0] for c in stack.connections() if c["remote"]}
                assert theirs in remotes, "the connection is the stack's"
                conn.sendall(pattern(100_000))
                got = b""
                while len(got) < 100_000:
                    got += conn.recv(65536)
                assert got == pattern(100_000)
            udp.settimeout(5)
            udp.sendto(b"datagram", (theirs, 9495))
            assert udp.recvfrom(100) == (b"datagram", (theirs, 9495, 0, 0))
            assert udp.getsockname()[1] in _udp_ports(stack), "a stack UDP socket"
            lab.run(sys.executable, "-c", SEND_TO_GROUP6, lab.peer, "ff12::1234", "9498")
            member.settimeout(5)
            data, source = member.recvfrom(100)
            assert (data, source[0]) == (b"to the group", theirs), "the group joined on the stack"
            # The kernel connects to the stack's link-local address: the dual-stack server
            # takes it and names it as it is; the IPv4 server's port refuses it.
            replies: list[str] = []
            ask = threading.Thread(
                target=lambda: replies.append(
                    lab.run(sys.executable, "-c", CONNECT6, f"{ours}%{lab.peer}", "9496").stdout
                )
            )
            ask.start()
            dual.settimeout(10)
            accepted, address = dual.accept()
            with accepted:
                assert address == (theirs, address[1], 0, 0) and accepted.getpeername() == address
                assert accepted.getsockname() == (ours, 9496, 0, 0)
                accepted.sendall(accepted.recv(100) + b" over IPv6")
            ask.join(10)
            assert replies == ["six over IPv6\n"]
            refused = lab.run(sys.executable, "-c", CONNECT6, f"{ours}%{lab.peer}", "9497").stdout
            assert refused == "refused\n"
        finally:
            for s in (udp, member, dual, v4):
                s.close()
