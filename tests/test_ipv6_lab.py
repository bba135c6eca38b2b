"""IPv6 on the stack, met by the kernel peer: its ping6 to the stack's link-local and
autoconfigured addresses, a router advertisement (sent with scapy) the stack takes an
address and a route from, a TCP connect refused, and an address the peer already holds."""

from __future__ import annotations

import errno
import inspect
import socket
import subprocess
import sys
import time

import pytest
import scapy.all as scapy
from conftest import DEVICE
from helpers import ipv6_address, link_local, linux_lab, peer_ipv6, wait_peer_address

import mipfast

STACK_CIDR = "10.77.0.2/24"
PREFIX = "fd77:0:0:1::"
PEER_GLOBAL = "fd77:0:0:1::1"

RA_SENDER = """
import sys
import scapy.all as s
iface, src, mac = sys.argv[1:4]
ra = (
    s.Ether(src=mac, dst="33:33:00:00:00:01")
    / s.IPv6(src=src, dst="ff02::1", hlim=255)
    / s.ICMPv6ND_RA(routerlifetime=1800, chlim=64)
    / s.ICMPv6NDOptSrcLLAddr(lladdr=mac)
    / s.ICMPv6NDOptPrefixInfo(
        prefix=sys.argv[4], prefixlen=64, L=1, A=1, validlifetime=3600, preferredlifetime=1800
    )
)
s.sendp(ra, iface=iface, verbose=False)
print("sent", flush=True)
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__, e)
"""


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _ping(lab, target: str) -> str:
    r = lab.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", target, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_the_kernel_reaches_the_stack_over_ipv6(lab, tmp_path):
    trace = tmp_path / "ipv6.pcap"
    with peer_ipv6(lab) as peer, mipfast.Stack(lab.iface, ip=STACK_CIDR, pcap_out=str(trace)) as stack:
        ours = link_local(stack.stats()["mac"])
        assert _wait(lambda: stack.ipv6_addresses == [ours]), stack.stats()["ipv6"]
        wait_peer_address(lab, peer["link_local"])

        # Neighbor discovery, then echo, on the link-local addresses.
        out = _ping(lab, f"{ours}%{lab.peer}")
        assert " 0% packet loss" in out, out
        neigh = lab.run("ip", "-6", "neigh", "show", "dev", lab.peer).stdout
        assert ours in neigh and stack.stats()["mac"] in neigh.lower(), neigh
        learnt = {n["ip"]: n["mac"] for n in stack.ndp_table()}
        assert learnt.get(peer["link_local"]) == peer["mac"], learnt
        # And the stack pings the kernel (ICMPv6 echo; a zone is allowed and ignored).
        rtts = stack.ping(f"{peer['link_local']}%{lab.peer}", count=3, timeout=2)
        assert all(rtt is not None and rtt < 1 for rtt in rtts), rtts

        # A router advertisement: the stack makes an address from its prefix, checks
        # it, and takes the router.
        lab.run(sys.executable, "-c", RA_SENDER, lab.peer, peer["link_local"], peer["mac"], PREFIX)
        ours_global = ipv6_address(PREFIX, stack.stats()["mac"])
        assert _wait(lambda: ours_global in stack.ipv6_addresses), stack.stats()["ipv6"]
        stats = stack.stats()
        assert stats["ipv6_routers"] == [peer["link_local"]]
        (slaac,) = [a for a in stats["ipv6"] if a["origin"] == "autoconf"]
        assert (slaac["prefix_len"], slaac["state"]) == (64, "preferred")
        assert 3500 < slaac["valid_left"] <= 3600 and 1700 < slaac["preferred_left"] <= 1800

        # The kernel reaches the new address from its own in the prefix: the stack
        # resolves the kernel's address before it answers.
        lab.run("ip", "-6", "addr", "add", f"{PEER_GLOBAL}/64", "dev", lab.peer, "nodad")
        out = _ping(lab, ours_global)
        assert " 0% packet loss" in out, out
        assert PEER_GLOBAL in {n["ip"] for n in stack.ndp_table()}
        assert stack.ping(PEER_GLOBAL, count=2, timeout=2)[-1] is not None
        assert stack.ping("fd77:0:0:1::99", timeout=0.5) == [None]  # nobody has it
        # Beyond the link, through the router (the peer, which does not forward).
        assert stack.ping("2001:db8::1", timeout=0.3) == [None]

        # A TCP connect to a port nobody listens on is refused at once (a reset).
        started = time.monotonic()
        result = lab.run(sys.executable, "-c", CONNECT, ours_global, "8000").stdout.strip()
        assert result == "refused" and time.monotonic() - started < 4, result
        assert stack.stats()["drops"]["tcp_no_listener"] >= 1

    frames = scapy.rdpcap(str(trace))
    sent = [f for f in frames if f.haslayer(scapy.IPv6) and f[scapy.Ether].src == stack_mac(frames)]
    probes = [f for f in sent if f.haslayer(scapy.ICMPv6ND_NS) and f[scapy.IPv6].src == "::"]
    assert {p[scapy.ICMPv6ND_NS].tgt for p in probes} >= {ours, ours_global}
    assert all(f[scapy.IPv6].hlim == 255 for f in probes)
    assert any(f.haslayer(scapy.ICMPv6ND_RS) for f in sent)
    assert any(f.haslayer(scapy.ICMPv6MLReport2) for f in sent)
    far = [f for f in sent if f.haslayer(scapy.ICMPv6EchoRequest) and f[scapy.IPv6].dst == "2001:db8::1"]
    assert far and far[0][scapy.Ether].dst == peer["mac"] and far[0][scapy.IPv6].src == ours_global


def stack_mac(frames: list) -> str:
    """The stack's MAC: the source of the first ARP it sent (its announcement)."""
    return next(
        f[scapy.ARP].hwsrc for f in frames if f.haslayer(scapy.ARP) and f[scapy.ARP].psrc == "10.77.0.2"
    )


def test_an_address_the_peer_holds_is_given_up(lab, tmp_path):
    trace = tmp_path / "dad.pcap"
    ours = link_local("02:00:01:02:03:77")  # the stack's default MAC's
    with peer_ipv6(lab):
        # The peer holds the stack's link-local address first, and defends it.
        lab.run("ip", "-6", "addr", "add", f"{ours}/64", "dev", lab.peer, "nodad")
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, pcap_out=str(trace)) as stack:
            assert _wait(lambda: stack.stats()["ipv6"][0]["state"] == "duplicate"), stack.stats()["ipv6"]
            assert stack.ipv6_addresses == []
            assert stack.stats()["drops"]["ipv6_address_conflict"] >= 1
            # The peer asks who has the address: the stack never answers for it.
            lab.run("ping", "-6", "-c", "1", "-W", "1", f"{ours}%{lab.peer}", check=False)
            time.sleep(0.3)
    frames = scapy.rdpcap(str(trace))
    mine = [f for f in frames if f.haslayer(scapy.IPv6) and f[scapy.Ether].src == stack_mac(frames)]
    assert [f for f in mine if f.haslayer(scapy.ICMPv6ND_NS) and f[scapy.IPv6].src == "::"], "it probed"
    assert not [f for f in mine if f.haslayer(scapy.ICMPv6ND_NA)]
    assert not [f for f in mine if f.haslayer(scapy.ICMPv6ND_RS)], "no address to solicit routers from"


def test_without_ipv6_the_stack_sends_none(lab, tmp_path):
    trace = tmp_path / "v4only.pcap"
    with peer_ipv6(lab) as peer:
        wait_peer_address(lab, peer["link_local"])
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, ipv6=False, pcap_out=str(trace)) as stack:
            r = lab.run(
                "ping",
                "-6",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                f"{link_local(stack.stats()['mac'])}%{lab.peer}",
                check=False,
            )
            assert r.returncode != 0
            assert stack.ipv6_addresses == [] and stack.stats()["ipv6"] == []
            assert stack.ndp_table() == []
            assert stack.stats()["drops"]["unknown_ethertype"] >= 1
    frames = scapy.rdpcap(str(trace))
    assert not [f for f in frames if f.haslayer(scapy.IPv6) and f[scapy.Ether].src == stack_mac(frames)]


UDP_PEER = """
import socket, sys
target, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 7777))
s.settimeout(5)
print("listening", flush=True)
s.sendto(b"hello over six", socket.getaddrinfo(target, port, socket.AF_INET6)[0][4])
data, src = s.recvfrom(100)
print(data.decode(), src[1], flush=True)
big = bytes(range(256)) * 24  # in fragments both ways
s.sendto(big, src)
data, _ = s.recvfrom(65536)
print("big", len(data), data == big[::-1], flush=True)
data, src = s.recvfrom(100)  # then one to the kernel's global address
print(data.decode(), flush=True)
"""


def test_udp_over_ipv6_with_the_kernel(lab, peer):
    named = "six.mipfast" in getattr(lab, "hosts", {})  # the lab has DNS, with an AAAA record
    dns = [lab.peer_ip] if named else None
    with peer_ipv6(lab) as kernel, mipfast.Stack(lab.iface, ip=STACK_CIDR, dns=dns) as stack:
        ours = link_local(stack.stats()["mac"])
        assert _wait(lambda: stack.ipv6_addresses == [ours])
        wait_peer_address(lab, kernel["link_local"])
        lab.run("ip", "-6", "addr", "add", f"{PEER_GLOBAL}/64", "dev", lab.peer, "nodad")
        with stack.udp(("::", 5300)) as sock:
            assert sock.family == socket.AF_INET6 and sock.getsockname() == ("::", 5300, 0, 0)
            sock.settimeout(5)
            remote = peer("-c", UDP_PEER, f"{ours}%{lab.peer}", "5300")
            data, src = sock.recvfrom(100)
            assert data == b"hello over six" and src == (kernel["link_local"], 7777, 0, 0)
            assert sock.sendto(b"hello back", src) == 10
            # Larger than the MTU: the kernel's fragments made whole, ours made whole by it.
            big, _ = sock.recvfrom(65536)
            assert big == bytes(range(256)) * 24
            assert sock.sendto(big[::-1], src) == len(big)
            # A name with no IPv6 address (AAAA) is no IPv6 destination.
            with pytest.raises(socket.gaierror):
                sock.sendto(b"x", ("lab.mipfast", 7777))
            # No route to the kernel's global address without a router or prefix...
            with pytest.raises(OSError):
                sock.sendto(b"x", (PEER_GLOBAL, 7777))
            # ...until a router advertises the prefix as on the link.
            lab.run(sys.executable, "-c", RA_SENDER, lab.peer, kernel["link_local"], kernel["mac"], PREFIX)
            assert _wait(lambda: len(stack.ipv6_addresses) == 2)
            # By its name where the lab has DNS, else by address.
            sock.sendto(b"to the global address", ("six.mipfast" if named else PEER_GLOBAL, 7777, 0, 0))
            lines = remote.result().splitlines()
            assert lines == ["hello back 5300", "big 6144 True", "to the global address"]
            assert stack.stats()["drops"].get("ipv6_fragment_malformed", 0) == 0
            with pytest.raises(OSError):  # an IPv4 option on an IPv6 socket
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        # A connected socket hears of a closed port (the kernel's port unreachable).
        with stack.udp(("::", 0)) as sock:
            sock.connect((kernel["link_local"], 7778, 0, 0))
            sock.send(b"anyone?")
            assert _wait(lambda: _refused(sock))
        assert 5300 not in {r["local"][1] for r in stack.udp_sockets()}


# The kernel's member of an IPv6 group: joins it on the peer's interface, prints what the
# stack sent to it, then sends to the group on the other port.
MULTICAST6_PEER = """
import socket, struct, sys
group, iface, port_in, port_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
index = socket.if_nametoindex(iface)
member = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
member.bind(("::", port_in))
mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
member.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
member.settimeout(10)
print("listening", flush=True)
data, source = member.recvfrom(100)
print("got", data.decode(), source[0].split("%")[0], flush=True)
out = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
out.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
out.sendto(b"from the kernel", (group, port_out, 0, index))
"""


def test_ipv6_multicast_to_and_from_a_kernel_member(lab, peer):
    """A stack socket joins an IPv6 group (IPV6_JOIN_GROUP): what the kernel sends to it
    arrives, and what the stack sends to a group the kernel joined reaches the kernel."""
    group = "ff12::1234"
    with peer_ipv6(lab) as kernel, mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        ours = link_local(stack.stats()["mac"])
        assert _wait(lambda: stack.ipv6_addresses == [ours])
        wait_peer_address(lab, kernel["link_local"])
        with stack.udp(("::", 5401)) as sock:
            mreq = socket.inet_pton(socket.AF_INET6, group) + (0).to_bytes(4, "little")
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            with pytest.raises(OSError) as e:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            assert e.value.errno == errno.EADDRINUSE
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 2)
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 2
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP) == 1
            sock.settimeout(10)
            member = peer("-c", MULTICAST6_PEER, group, lab.peer, "5400", "5401")
            sock.sendto(b"to ourselves", (group, 5401))
            data, source = sock.recvfrom(100)
            assert (data, source[0]) == (b"to ourselves", ours), "looped back (IPV6_MULTICAST_LOOP)"
            sock.sendto(b"from the stack", (group, 5400))
            data, source = sock.recvfrom(100)
            assert (data, source[0]) == (b"from the kernel", kernel["link_local"])
            assert member.result().splitlines() == [f"got from the stack {ours}"]
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq)
            with pytest.raises(OSError) as e:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
            assert e.value.errno == errno.ENOPROTOOPT


def _refused(sock) -> bool:
    try:
        sock.send(b"again?")
    except ConnectionRefusedError:
        return True
    return False


def _exchange(conn, size: int) -> tuple[int, str]:
    """Sends and receives ``size`` bytes at once on a connection (the stack's, or the
    kernel's in the peer below, which runs this very function)."""
    import hashlib
    import threading

    data = bytes(range(256)) * (size // 256)
    sender = threading.Thread(target=conn.sendall, args=(data,))
    sender.start()
    h, got = hashlib.sha256(), 0
    while got < size:
        chunk = conn.recv(65536)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    sender.join()
    return got, h.hexdigest()


TCP_PEER = (
    inspect.getsource(_exchange)
    + """
import socket, sys
mode, host, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "serve":
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen()
    print("listening", flush=True)
    conn, peer = srv.accept()
    print(peer[0], flush=True)
else:
    print("listening", flush=True)
    conn = socket.create_connection((host, port), timeout=10)
print(*_exchange(conn, size), flush=True)
"""
)


@linux_lab  # tcpdump
def test_tcp_over_ipv6_with_the_kernel(lab, peer, tmp_path):
    """4 MiB each way, with the kernel connecting and with the stack connecting.
    Our segments leave in bursts the kernel cuts (on the default device), their
    checksums finished by it: the recording shows every one correct."""
    size = 4 << 20
    expected = __import__("hashlib").sha256(bytes(range(256)) * (size // 256)).hexdigest()
    trace = str(tmp_path / "tcp6.pcap")
    with peer_ipv6(lab) as kernel, mipfast.Stack(lab.iface, ip=STACK_CIDR, pcap_out=trace) as stack:
        ours = link_local(stack.stats()["mac"])
        assert _wait(lambda: stack.ipv6_addresses == [ours])
        wait_peer_address(lab, kernel["link_local"])
        # The kernel connects to the stack's listener (which takes both families).
        listener = stack.listen(9600)
        client = peer("-c", TCP_PEER, "connect", f"{ours}%{lab.peer}", "9600", str(size))
        conn, address = listener.accept(timeout=10)
        assert address[0] == kernel["link_local"] and len(address) == 4
        assert conn.family == socket.AF_INET6 and conn.getsockname()[:2] == (ours, 9600)
        assert _exchange(conn, size) == (size, expected)
        assert client.result().split() == [str(size), expected]
        conn.close()
        # The stack connects to the kernel's server, by a 4-tuple address.
        server = peer("-c", TCP_PEER, "serve", "-", "9601", str(size))
        with stack.connect((kernel["link_local"], 9601, 0, 0), timeout=10) as conn:
            assert conn.getpeername() == (kernel["link_local"], 9601, 0, 0)
            assert _exchange(conn, size) == (size, expected)
        assert server.result().split() == [ours, str(size), expected]
        tcp = {(c["state"], c["remote"][1] if c["remote"] else None) for c in stack.connections()}
        assert ("LISTEN", None) in tcp
        counters = stack.counters
    if DEVICE == "auto":
        assert counters["bursts_out"] > 10, counters
    r = subprocess.run(["tcpdump", "-r", trace, "-nn", "-vv", "ip6 and tcp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # "IP6 (…) ADDRESS.PORT > ADDRESS.PORT: Flags […], cksum 0x… (correct), …"
    sent = [line for line in r.stdout.splitlines() if f") {ours}." in line.split(">")[0]]
    assert len(sent) > 2 * size // 1428 // 2, r.stdout[:2000]
    assert all("(correct)" in line for line in sent), [line for line in sent if "(correct)" not in line][:5]
