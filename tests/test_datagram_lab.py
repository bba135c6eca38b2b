"""UDP, DNS, ping and IPv4 fragments through the stack, the Linux kernel as the peer."""

from __future__ import annotations

import errno
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import linux_lab

import mipfast

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PEER_PY = str(Path(__file__).resolve().parent / "peer.py")

STACK_IP = "10.77.0.2"
STACK_CIDR = f"{STACK_IP}/24"

UDP_CLIENT = """
import socket, sys, hashlib
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
host, port = sys.argv[1], int(sys.argv[2])
for size in (1, 1472, 1473, 20000):
    data = bytes((i * 13 + size) % 256 for i in range(size))
    s.sendto(data, (host, port))
    back, src = s.recvfrom(65535)
    assert back == data and src == (host, port), (size, len(back), src)
    print("echoed", size, flush=True)
"""


def ns_python(lab, script: str, *args: str) -> subprocess.Popen[str]:
    """Python in the namespace: ``script`` is a program's text, or the path of peer.py."""
    program = [script] if script == PEER_PY else ["-c", script]
    return subprocess.Popen(
        lab.ns(sys.executable, *program, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def stack(lab):
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, dns=lab.peer_ip) as s:
        yield s


def test_udp_echo_from_a_kernel_server_with_fragments(lab, stack):
    server = ns_python(lab, PEER_PY, "udp-echo", "7007")
    try:
        assert "listening" in server.stdout.readline()
        with stack.udp() as sock:
            sock.settimeout(5)
            addr = sock.getsockname()
            assert addr[0] == "0.0.0.0" and addr[1] >= 49152
            for size in (0, 1, 1472, 1473, 20_000, 65_507):
                data = bytes((i * 7 + size) % 256 for i in range(size))
                assert sock.sendto(data, (lab.peer_ip, 7007)) == size
                back, src = sock.recvfrom(65_535)
                assert (back, src) == (data, (lab.peer_ip, 7007)), size
            # recvfrom_into, and truncation to the buffer as the kernel does.
            sock.sendto(b"x" * 3000, (lab.peer_ip, 7007))
            buf = bytearray(100)
            assert sock.recvfrom_into(buf) == (100, (lab.peer_ip, 7007))
            assert bytes(buf) == b"x" * 100
            # Connected: send/recv, and getpeername.
            sock.connect((lab.peer_ip, 7007))
            assert sock.getpeername() == (lab.peer_ip, 7007)
            sock.send(b"connected")
            assert sock.recv(100) == b"connected"
    finally:
        server.kill()
        server.communicate()
    counters = stack.counters
    assert counters["drop_ipv4_fragment_overlap"] == 0
    assert counters["drop_ipv4_reassembly_timeout"] == 0


def test_udp_echo_for_a_kernel_client(lab, stack):
    with stack.udp(("0.0.0.0", 7008)) as sock:
        client = ns_python(lab, UDP_CLIENT, STACK_IP, "7008")
        sock.settimeout(10)
        for _ in range(4):
            data, src = sock.recvfrom(65_535)
            sock.sendto(data, src)
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err
        assert out.split() == ["echoed", "1", "echoed", "1472", "echoed", "1473", "echoed", "20000"]


def test_peek_and_dontwait_leave_datagrams_queued(lab, stack):
    with stack.udp(("0.0.0.0", 7009)) as sock:
        sock.settimeout(5)
        with pytest.raises(BlockingIOError):  # blocking socket, one call that is not
            sock.recvfrom(10, socket.MSG_DONTWAIT)
        with pytest.raises(OSError) as e:
            sock.recvfrom(10, socket.MSG_OOB)
        assert e.value.errno == errno.EOPNOTSUPP  # never a flag silently ignored
        sender = ns_python(
            lab,
            "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(b'first', (sys.argv[1], 7009)); s.sendto(b'second', (sys.argv[1], 7009))",
            STACK_IP,
        )
        assert sender.wait(timeout=10) == 0
        data, src = sock.recvfrom(100, socket.MSG_PEEK)
        assert data == b"first" and src[0] == lab.peer_ip
        buf = bytearray(3)
        assert sock.recvfrom_into(buf, 0, socket.MSG_PEEK) == (3, src)
        assert bytes(buf) == b"fir"
        assert sock.recvfrom(100) == (b"first", src)
        assert sock.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"second"
        assert sock.recv(100, socket.MSG_WAITALL) == b"second"  # datagrams ignore it, as Linux


def test_closed_port_refuses_a_connected_socket_and_answers_unreachable(lab, stack):
    with stack.udp() as sock:
        sock.connect((lab.peer_ip, 9))  # nobody listens on the kernel side
        sock.settimeout(3)
        sock.send(b"ping")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(10)
    # And the stack answers the kernel's datagram to a closed port like a kernel.
    probe = ns_python(
        lab,
        "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
        "s.connect((sys.argv[1], 9)); s.send(b'x')\n"
        "try:\n    s.recv(1)\nexcept ConnectionRefusedError:\n    print('refused')",
        STACK_IP,
    )
    out, err = probe.communicate(timeout=10)
    assert out.strip() == "refused", err


def test_timeouts_nonblocking_broadcast_and_errors(lab, stack):
    with stack.udp() as sock:
        sock.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            sock.recvfrom(10)
        assert 0.15 < time.monotonic() - start < 2
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recvfrom(10)
        with pytest.raises(PermissionError):
            sock.sendto(b"all", ("10.77.0.255", 9))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
        sock.sendto(b"all", ("10.77.0.255", 9))
        with pytest.raises(OSError) as e:
            sock.sendto(b"x" * 65_508, (lab.peer_ip, 9))
        assert e.value.errno == errno.EMSGSIZE
        with pytest.raises(OSError) as e:
            sock.send(b"x")
        assert e.value.errno == errno.EDESTADDRREQ
    with pytest.raises(OSError) as e:
        sock.sendto(b"x", (lab.peer_ip, 9))
    assert e.value.errno == errno.EBADF
    with stack.udp(("0.0.0.0", 7100)), pytest.raises(OSError) as e:
        stack.udp(("0.0.0.0", 7100))
    assert e.value.errno == errno.EADDRINUSE


@linux_lab  # dnsmasq
def test_names_from_dnsmasq_and_connect_by_name(lab, stack):
    assert stack.dns == [lab.peer_ip]
    assert stack.resolve("lab.mipfast", timeout=5) == [lab.peer_ip]
    assert stack.resolve("LAB.mipfast.", timeout=5) == [lab.peer_ip]  # cached, case-insensitive
    assert stack.ping("lab.mipfast")[0] is not None  # ping by name
    with pytest.raises(socket.gaierror) as e:
        stack.resolve("nope.mipfast", timeout=5)
    assert e.value.errno == socket.EAI_NONAME
    with pytest.raises(socket.gaierror):
        stack.resolve("bad..name")
    # AAAA lookups: the IPv6 name, both families at once, a name with IPv4 only.
    assert stack.resolve("six.mipfast", timeout=5, family=socket.AF_INET6) == ["fd77:0:0:1::1"]
    assert stack.resolve("six.mipfast", timeout=5, family=socket.AF_UNSPEC) == ["fd77:0:0:1::1"]
    assert stack.resolve("lab.mipfast", timeout=5, family=socket.AF_UNSPEC) == [lab.peer_ip]
    with pytest.raises(socket.gaierror) as e:
        stack.resolve("lab.mipfast", timeout=5, family=socket.AF_INET6)
    # (dnsmasq's catch-all for the lab domain answers the AAAA question with NXDOMAIN.)
    assert e.value.errno in (socket.EAI_NODATA, socket.EAI_NONAME)
    with pytest.raises(socket.gaierror):
        stack.resolve("six.mipfast", timeout=5)  # AF_INET: no A record
    with pytest.raises(ValueError):
        stack.resolve("six.mipfast", family=socket.AF_UNIX)
    server = subprocess.Popen(
        lab.ns(sys.executable, "-m", "http.server", "8089", "--bind", lab.peer_ip),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = stack.connect(("lab.mipfast", 8089), timeout=5)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            assert conn.getpeername() == (lab.peer_ip, 8089)
            conn.sendall(b"GET / HTTP/1.0\r\nHost: lab.mipfast\r\n\r\n")
            assert conn.recv(12).startswith(b"HTTP/1.0 200")
        with pytest.raises(socket.gaierror):
            stack.connect(("nope.mipfast", 80), timeout=5)
    finally:
        server.kill()
        server.wait()


# A DNS server that answers A questions with argv[2] and never answers the rest (AAAA).
A_ONLY_DNS = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("listening", flush=True)
while True:
    q, client = s.recvfrom(512)
    end = 12
    while q[end]:
        end += q[end] + 1
    if q[end + 1 : end + 3] != b"\\x00\\x01":
        print("unanswered", q[end + 1 : end + 3].hex(), flush=True)
        continue
    head = q[:2] + b"\\x81\\x80" + q[4:6] + b"\\x00\\x01\\x00\\x00\\x00\\x00"
    record = b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04" + socket.inet_aton(sys.argv[2])
    s.sendto(head + q[12 : end + 5] + record, client)
"""


@linux_lab  # ip addr
def test_a_server_that_never_answers_aaaa_costs_a_lookup_of_both_families_50_ms(lab):
    """RFC 8305's resolution delay: with the A answer in, the AAAA one is waited for 50 ms,
    not for the query's retries, which would outlast the 3-second timeout here."""
    server_ip = "10.77.0.53"
    lab.run("ip", "addr", "add", f"{server_ip}/24", "dev", lab.peer)
    dns = ns_python(lab, A_ONLY_DNS, server_ip, lab.peer_ip)
    try:
        assert dns.stdout.readline().strip() == "listening"
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, dns=server_ip) as stack:
            assert stack.resolve("slow.test", timeout=3, family=socket.AF_UNSPEC) == [lab.peer_ip]
            listener = ns_python(lab, PEER_PY, "echo", "9300")
            try:
                assert listener.stdout.readline().strip() == "listening"
                with stack.connect(("other.test", 9300), timeout=3) as conn:
                    assert conn.getpeername() == (lab.peer_ip, 9300)
            finally:
                listener.kill()
                listener.wait()
        dns.kill()
        asked = dns.communicate()[0]
        assert "unanswered 001c" in asked, asked  # the AAAA questions were asked, and left
    finally:
        dns.kill()
        dns.wait()
        lab.run("ip", "addr", "del", f"{server_ip}/24", "dev", lab.peer, check=False)


def test_ping_the_kernel(lab, stack):
    rtts = stack.ping(lab.peer_ip, count=5, timeout=1.0)
    assert len(rtts) == 5
    assert all(r is not None and 0 < r < 0.5 for r in rtts), rtts
    # Large: fragmented out, the kernel's fragmented reply reassembled.
    (big,) = stack.ping(lab.peer_ip, size=20_000, timeout=2.0)
    assert big is not None
    # To nobody: lost, reported as None after the timeout.
    start = time.monotonic()
    assert stack.ping("10.77.0.99", count=2, timeout=0.3) == [None, None]
    assert time.monotonic() - start < 3


def test_ping_example_prints_replies(lab):
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "ping.py"),
            "-i",
            lab.iface,
            "--ip",
            STACK_CIDR,
            "-c",
            "3",
            lab.peer_ip,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"bytes from {lab.peer_ip}") == 3
    assert "3 transmitted, 3 received, 0% loss" in out.stdout


LOGS_THROUGH_THE_STACK = """
import logging, sys
import mipfast
stack = mipfast.Stack(sys.argv[1], ip=sys.argv[2])
peer_ip, tcp_port, udp_port = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
udp = stack.udp()

class ThroughTheStack(logging.Handler):
    # A device that sends its log over its own network: each record calls into the stack.
    def emit(self, record):
        udp.sendto(self.format(record).encode(), (peer_ip, udp_port))

log = logging.getLogger("mipfast")
log.setLevel(logging.DEBUG)
log.addHandler(ThroughTheStack())
log.propagate = False
mipfast.reset_logging()
conn = stack.connect((peer_ip, tcp_port), timeout=5)  # its state changes are logged under the engine lock
conn.sendall(b"x" * 64)
got = b""
while len(got) < 64:
    got += conn.recv(64)
conn.close()
log.setLevel(logging.WARNING)
mipfast.reset_logging()
udp.settimeout(1)
try:
    while True:
        print(udp.recv(65535).decode(), flush=True)  # the echo of each record sent
except TimeoutError:
    pass
stack.close()
print("ok", flush=True)
"""


def test_a_log_handler_that_sends_through_the_stack_gets_every_record(lab):
    """The engine logs a connection's state changes while it holds its lock, and Rust records
    reach Python's `logging` on the thread that made them. A handler that sends its records
    through the stack (a device logging over its own network) then called into the engine on a
    thread that held its lock: it hung. Records made under the lock now reach the logger once
    the lock is let go, in order."""
    server = ns_python(lab, PEER_PY, "udp-echo", "7011")
    echo = ns_python(lab, PEER_PY, "echo", "7012")
    try:
        assert "listening" in server.stdout.readline()
        run = subprocess.run(
            [sys.executable, "-c", LOGS_THROUGH_THE_STACK, lab.iface, STACK_CIDR, lab.peer_ip]
            + ["7012", "7011"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for p in (server, echo):
            p.kill()
            p.communicate()
    assert run.returncode == 0 and run.stdout.endswith("ok\n"), run.stderr[-2000:]
    changes = [line for line in run.stdout.splitlines() if line.startswith("TCP ")]
    states = [line.rsplit(": ", 1)[1] for line in changes]
    for change in ("CLOSED -> SYN_SENT", "SYN_SENT -> ESTABLISHED", "ESTABLISHED -> FIN_WAIT_1"):
        assert change in states, run.stdout


MULTICAST_PEER = """
import socket, struct, sys, time
group, iface, peer_ip = sys.argv[1:4]
port_in, port_out = int(sys.argv[4]), int(sys.argv[5])
capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
capture.bind((iface, 0x0800))  # (the stdlib puts it in network order)
capture.settimeout(0.2)
member = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
member.bind(("", port_in))
mreq = socket.inet_aton(group) + socket.inet_aton(peer_ip)
member.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
member.settimeout(10)
print("listening", flush=True)
data, source = member.recvfrom(100)
print("got", data.decode(), source[0], flush=True)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(peer_ip))
out.sendto(b"from the kernel", (group, port_out))
# A general query (to 224.0.0.1, answers due within 0.2 s), again until the stack's report is seen.
query = bytearray([0x11, 2, 0, 0, 0, 0, 0, 0])
total = sum(int.from_bytes(query[i : i + 2], "big") for i in range(0, 8, 2))
total = (total & 0xFFFF) + (total >> 16)
query[2:4] = (~total & 0xFFFF).to_bytes(2, "big")
asker = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
asker.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(peer_ip))
asker.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
deadline = time.monotonic() + 10
asked_at = 0.0
reported = False
while time.monotonic() < deadline:
    if not reported and time.monotonic() - asked_at > 0.5:
        asker.sendto(bytes(query), ("224.0.0.1", 0))
        asked_at = time.monotonic()
    try:
        frame = capture.recv(2048)
    except TimeoutError:
        continue
    ip = frame[14:]
    if ip[9] != 2 or socket.inet_ntoa(ip[12:16]) == peer_ip:
        continue  # only the stack's IGMP
    igmp = ip[(ip[0] & 15) * 4:]
    if not reported or igmp[0] == 0x17:
        group_of, dst = socket.inet_ntoa(igmp[4:8]), socket.inet_ntoa(ip[16:20])
        print("igmp", hex(igmp[0]), group_of, dst, ip[8], flush=True)
    reported = reported or igmp[0] == 0x16
    if igmp[0] == 0x17:
        break
"""


@linux_lab  # the peer captures with AF_PACKET
def test_multicast_to_and_from_a_kernel_member_with_igmp(lab, stack):
    """A stack socket joins a group (IP_ADD_MEMBERSHIP): the kernel peer gets what the stack sends
    to the group, the stack gets what the peer sends to it, and the peer sees the stack's IGMP
    report (asking with queries until it does), until IP_DROP_MEMBERSHIP, whose leave it sees too."""
    group = "239.77.1.1"
    stack.start()  # (timers answer the peer's query)
    peer = ns_python(lab, MULTICAST_PEER, group, lab.peer, lab.peer_ip, "9053", "9054")
    try:
        assert "listening" in peer.stdout.readline(), peer.stderr.read()
        mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0"))
        with stack.udp(("", 9054)) as udp:
            udp.settimeout(10)
            assert udp.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
            assert udp.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            errors = {}
            for name, call in {
                "joined twice": lambda: udp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq),
                "an int": lambda: udp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, 1),
                "not a group": lambda: udp.setsockopt(
                    socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("10.1.2.3") + bytes(4)
                ),
                "not joined": lambda: udp.setsockopt(
                    socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, socket.inet_aton("239.77.9.9") + bytes(4)
                ),
            }.items():
                with pytest.raises(OSError) as e:
                    call()
                errors[name] = e.value.errno
            assert errors == {
                "joined twice": errno.EADDRINUSE,
                "an int": errno.EINVAL,
                "not a group": errno.EINVAL,
                "not joined": errno.EADDRNOTAVAIL,
            }
            udp.sendto(b"hello group", (group, 9053))
            assert peer.stdout.readline().split() == ["got", "hello", "group", STACK_IP]
            data, source = udp.recvfrom(100)
            assert data == b"from the kernel" and source[0] == lab.peer_ip
            # Its membership reported (at the join, or in answer to the peer's query): to the
            # group, TTL 1.
            assert peer.stdout.readline().split() == ["igmp", "0x16", group, group, "1"]
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
        out, err = peer.communicate(timeout=15)
        # The leave, to all routers.
        assert out.split() == ["igmp", "0x17", group, "224.0.0.2", "1"], out + err
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate()
