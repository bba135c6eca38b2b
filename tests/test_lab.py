"""The stack against the Linux kernel: DHCP from dnsmasq, ping, ARP, traces."""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from helpers import linux_lab, ping_cmd, skip_or_fail, stop

import mipfast

READY = re.compile(r"READY, IP: (\d+\.\d+\.\d+\.\d+) / GW: (\d+\.\d+\.\d+\.\d+) / Lease: (\d+) sec")


def ping(lab, ip: str, count: int, interval: float = 0.01) -> tuple[int, str]:
    r = lab.run(*ping_cmd(ip, count, interval=interval), check=False)
    m = re.search(r"(\d+) received", r.stdout)
    return (int(m.group(1)) if m else 0), r.stdout + r.stderr


@linux_lab
def test_dhcp_lease_from_dnsmasq_and_ready_logged(lab, caplog):
    caplog.set_level(logging.INFO, logger="mipfast")
    start = time.monotonic()
    with mipfast.Stack(lab.iface) as stack:
        stack.wait_ready(timeout=10)
        took = time.monotonic() - start
        ip = ipaddress.ip_address(stack.ip)
        assert ipaddress.ip_address("10.77.0.100") <= ip <= ipaddress.ip_address("10.77.0.199")
        assert stack.ready
        assert stack.netmask == "255.255.255.0" and stack.prefix_len == 24
        assert stack.gateway == lab.peer_ip
        assert stack.dns == [lab.peer_ip]
        assert stack.mac == mipfast.DEFAULT_MAC
        assert 43000 < stack.lease_remaining <= 43200
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("mipfast")]
        ready = [READY.search(line) for line in lines if READY.search(line)]
        assert ready, lines
        assert ready[0].groups() == (stack.ip, lab.peer_ip, "43200")
        # dnsmasq recorded the lease for our MAC.
        leases = lab.lease_file.read_text()
        assert stack.mac in leases and stack.ip in leases
    assert took < 5, f"READY took {took:.2f} s"


@linux_lab  # ip neigh
def test_kernel_pings_the_stack_fifty_times_and_learns_our_mac(lab):
    with mipfast.Stack(lab.iface) as stack:
        stack.wait_ready(timeout=10)
        received, out = ping(lab, stack.ip, 50)
        assert received == 50, out
        neigh = lab.run("ip", "neigh", "show", stack.ip).stdout
        assert mipfast.DEFAULT_MAC in neigh.lower(), neigh
        c = stack.counters
        assert c["frames_in"] >= 50 and c["frames_out"] >= 50


@linux_lab  # ip neigh
def test_static_address_answers_ping_with_a_chosen_mac(lab):
    mac = "02:00:00:aa:bb:cc"
    with mipfast.Stack(
        lab.iface, mac=mac, ip="10.77.0.23/24", gateway=lab.peer_ip, dns=[lab.peer_ip, "fd77::53"]
    ) as stack:
        stack.wait_ready(timeout=1)
        assert (stack.ip, stack.gateway, stack.dns, stack.lease_remaining) == (
            "10.77.0.23",
            lab.peer_ip,
            [lab.peer_ip, "fd77::53"],  # DNS servers of either family
            None,
        )
        received, out = ping(lab, "10.77.0.23", 20)
        assert received == 20, out
        assert mac in lab.run("ip", "neigh", "show", "10.77.0.23").stdout.lower()
        # An address nobody holds is not answered for.
        lost, _ = ping(lab, "10.77.0.24", 2)
        assert lost == 0


def test_a_second_stack_with_the_same_mac_on_the_interface_is_refused(lab):
    """Two stacks with one MAC on one interface would each take the other's frames (and
    reset its connections as unknown); neither could see the other on the wire."""
    first = mipfast.Stack(lab.iface, ip="10.77.0.40/24")
    first.start()
    held = first.udp()  # an object of the first stack outlives its close()
    try:
        with pytest.raises(OSError) as refused:
            mipfast.Stack(lab.iface, ip="10.77.0.41/24")
        assert refused.value.errno == errno.EADDRINUSE
        assert lab.iface in str(refused.value) and mipfast.DEFAULT_MAC in str(refused.value), refused.value
        cli = subprocess.run(
            [sys.executable, "-m", "mipfast", "-i", lab.iface, "--ip", "10.77.0.41/24", "--no-http"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert cli.returncode == 2 and f"process {os.getpid()}" in cli.stderr, cli.stderr
        # Another MAC is another station on the same interface.
        with mipfast.Stack(lab.iface, mac="02:00:00:aa:bb:01", ip="10.77.0.42/24"):
            received, out = ping(lab, "10.77.0.42", 3)
            assert received == 3, out
            assert ping(lab, "10.77.0.40", 3)[0] == 3
    finally:
        first.close()
    with mipfast.Stack(lab.iface, ip="10.77.0.40/24") as again:
        received, out = ping(lab, "10.77.0.40", 3)
        assert received == 3, out
        assert again.ip == "10.77.0.40"
    held.close()


FORKED = r"""
import json, os, sys, mipfast
iface, peer_ip, port, trace = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def echo(conn, data):
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        got += conn.recv(len(data) - len(got))
    return got.decode()
with mipfast.Stack(iface, ip="10.77.0.43/24", pcap_out=trace) as stack:
    conn = stack.connect((peer_ip, port), timeout=5)
    listener, udp = stack.listen(9555), stack.udp()
    report = {"before": echo(conn, b"before")}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        calls = {
            "recv": lambda: conn.recv(10), "sendall": lambda: conn.sendall(b"x"),
            "accept": lambda: listener.accept(timeout=0.1), "sendto": lambda: udp.sendto(b"x", (peer_ip, 9)),
            "connect": lambda: stack.connect((peer_ip, port), timeout=1), "ping": lambda: stack.ping(peer_ip),
            "same MAC": lambda: mipfast.Stack(iface, ip="10.77.0.44/24"),
        }
        child = {}
        for name, call in calls.items():
            try:
                call()
                child[name] = None
            except OSError as e:
                child[name] = [e.errno, str(e)]
        with mipfast.Stack(iface, mac="02:00:00:aa:bb:02", ip="10.77.0.44/24") as own:
            child["own stack"] = own.ping(peer_ip, timeout=2)
        os.write(w, json.dumps(child).encode())
        sys.exit(0)  # out of the with-block: the child closes its copies, then exits normally
    os.close(w)
    report["child"] = json.loads(os.read(r, 1 << 16))
    report["status"] = os.waitpid(pid, 0)[1]
    report["after"] = echo(conn, b"after")
    report["ping"] = stack.ping(peer_ip, timeout=2)
    conn.close()
print(json.dumps(report))
"""


def pcap_timestamps(path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    stamps, at = [], 24
    while at + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from("<IIII", data, at)
        stamps.append((sec, frac))
        at += 16 + caplen
    assert at == len(data), "the trace ends in the middle of a record"
    return stamps


def test_a_forked_child_cannot_use_its_parents_stack_and_leaves_it_whole(lab, peer, tmp_path):
    """A fork copies the stack without its driver, onto the parent's socket, ring and wire: the
    child's calls fail with EBADF and say why, and its exit (closing its copies as the
    interpreter ends) resets nothing, takes no frame and writes nothing of the parent's."""
    from conftest import PEER_PY

    peer(PEER_PY, "echo", "9554")
    trace = tmp_path / "parent.pcap"
    run = subprocess.run(
        [sys.executable, "-c", FORKED, lab.iface, lab.peer_ip, "9554", str(trace)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "panicked" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
    report = json.loads(run.stdout)
    child = report.pop("child")
    assert child.pop("own stack")[0] is not None, "the child's own stack (another MAC) answers"
    same_mac = child.pop("same MAC")
    assert same_mac[0] == errno.EADDRINUSE, same_mac
    for call, error in child.items():
        assert error is not None and error[0] == errno.EBADF, (call, error)
        assert "forked" in error[1] and "socket_for" in error[1], (call, error)
    assert report["status"] == 0
    assert report["before"] == "before" and report["after"] == "after", report
    assert report["ping"][0] is not None, report
    stamps = pcap_timestamps(trace)
    assert len(stamps) > 10 and stamps == sorted(stamps), "the trace holds records twice"


def test_what_may_not_leave_the_host_fails_at_once(lab):
    """Loopback and "this network" never go on the wire, nor does a TCP connection to a
    broadcast or multicast address: the calls fail at once with ENETUNREACH, where they used
    to send martian SYNs and wait out their timeout."""
    with mipfast.Stack(lab.iface, ip="10.77.0.45/24", gateway=lab.peer_ip) as stack:
        udp = stack.udp()
        for ip in ("127.0.0.1", "0.1.2.3", "10.77.0.255", "255.255.255.255", "224.0.0.1"):
            start = time.monotonic()
            with pytest.raises(OSError) as refused:
                stack.connect((ip, 80), timeout=5)
            assert refused.value.errno == errno.ENETUNREACH, (ip, refused.value)
            assert time.monotonic() - start < 1, ip
        for ip in ("127.0.0.1", "0.1.2.3"):
            with pytest.raises(OSError) as refused:
                udp.sendto(b"x", (ip, 9))
            assert refused.value.errno == errno.ENETUNREACH, (ip, refused.value)
            with pytest.raises(OSError) as refused:
                stack.ping(ip)
            assert refused.value.errno == errno.ENETUNREACH, (ip, refused.value)
        assert udp.sendto(b"x", ("224.0.0.1", 9)) == 1  # a datagram may go to a group
        assert stack.ping(lab.peer_ip, timeout=2)[0] is not None


def peer_rx_bytes(lab) -> int:
    return int(lab.run("cat", f"/sys/class/net/{lab.peer}/statistics/rx_bytes").stdout)


def test_a_stack_reaches_its_own_address_without_the_wire(lab):
    """A connection, datagrams and pings to the stack's own address are delivered to itself, as
    a kernel's go through its loopback interface: a megabyte echoed both ways, a datagram bigger
    than the MTU, a ping; the peer's interface sees none of it."""
    with mipfast.Stack(lab.iface, ip="10.77.0.46/24") as stack:
        stack.ping(lab.peer_ip, timeout=2)  # (the peer's ARP for us is behind us)
        before = peer_rx_bytes(lab)
        with stack.listen(9556) as listener:
            client = stack.connect(("10.77.0.46", 9556), timeout=5)
            server, (peer_ip, _) = listener.accept(timeout=5)
            assert peer_ip == "10.77.0.46"
            data = os.urandom(1 << 20)

            def echo() -> None:
                while chunk := server.recv(65536):
                    server.sendall(chunk)
                server.close()

            echoer = threading.Thread(target=echo)
            echoer.start()
            sender = threading.Thread(target=lambda: (client.sendall(data), client.shutdown(socket.SHUT_WR)))
            sender.start()
            client.settimeout(30)
            back = bytearray()
            while chunk := client.recv(65536):
                back += chunk
            sender.join(10)
            echoer.join(10)
            client.close()
            assert bytes(back) == data
        with stack.udp(("0.0.0.0", 9557)) as receiver, stack.udp() as sender_udp:
            receiver.settimeout(5)
            big = os.urandom(4000)
            sender_udp.sendto(big, ("10.77.0.46", 9557))
            assert receiver.recvfrom(8000) == (big, ("10.77.0.46", sender_udp.getsockname()[1]))
        assert stack.ping("10.77.0.46", timeout=2)[0] is not None
        assert peer_rx_bytes(lab) - before < 10_000, "our own traffic went on the wire"
        assert stack.counters["bytes_out"] < 100_000


def test_manual_poll_loop_without_driver_thread(lab):
    stack = mipfast.Stack(lab.iface, ip="10.77.0.31/24")
    try:
        proc = subprocess.Popen(
            lab.ns(*ping_cmd("10.77.0.31", 10, interval=0.02)),
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            stack.poll(timeout=0.1)
        out = proc.communicate(timeout=5)[0]
        assert " 10 received" in out, out
        # With nothing to do, poll blocks for the timeout and returns 0 (the peer's
        # kernel may first re-check our ARP entry: a frame, so poll returns early).
        for _ in range(10):
            t = time.monotonic()
            if stack.poll(timeout=0.2) == 0:
                break
        else:
            raise AssertionError("every poll found frames: the peer never went quiet")
        assert 0.15 < time.monotonic() - t < 2
    finally:
        stack.close()


@linux_lab
def test_trace_file_holds_the_dhcp_exchange(lab, tmp_path):
    trace = tmp_path / "trace.pcap"
    with mipfast.Stack(lab.iface, pcap_out=str(trace)) as stack:
        stack.wait_ready(timeout=10)
        ping(lab, stack.ip, 3)
    tcpdump = shutil.which("tcpdump")
    assert tcpdump, "tcpdump is installed by .ci/run"
    r = subprocess.run([tcpdump, "-r", str(trace), "-nn", "-v"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for kind in ("Discover", "Offer", "Request", "ACK"):
        assert f"DHCP-Message (53), length 1: {kind}" in r.stdout, r.stdout[:3000]
    assert "ICMP echo request" in r.stdout and "ICMP echo reply" in r.stdout


def test_garbage_from_the_kernel_side_is_counted_and_ping_still_works(lab):
    if importlib.util.find_spec("scapy") is None:
        skip_or_fail("scapy is not installed (scripts/setup.sh installs it)")
    with mipfast.Stack(lab.iface, ip="10.77.0.40/24") as stack:
        stack.wait_ready(timeout=1)
        ping(lab, "10.77.0.40", 1)  # the kernel learns our MAC
        before = stack.counters
        script = (
            "from scapy.all import *\n"
            "import random\n"
            "random.seed(5)\n"
            f"dst='{mipfast.DEFAULT_MAC}'\n"
            "frames=[]\n"
            "for i in range(2000):\n"
            "    pad=b'x'*random.randint(0,64)\n"
            "    base=bytes(Ether(dst=dst)/IP(src='10.77.0.1',dst='10.77.0.40')/ICMP()/pad)\n"
            "    b=bytearray(base)\n"
            "    for _ in range(random.randint(1,6)):\n"
            "        j=random.randrange(14,len(b)); b[j]=random.randrange(256)\n"
            "    frames.append(bytes(b[:random.randint(14,len(b))]))\n"
            f"sendp([Raw(f) for f in frames], iface='{lab.peer}', verbose=False)\n"
        )
        lab.run(sys.executable, "-c", script, timeout=120)
        time.sleep(0.5)
        after = stack.counters
        assert after["frames_in"] - before["frames_in"] >= 1900
        dropped = sum(after[k] - before[k] for k in after if k.startswith("drop_"))
        assert dropped >= 1500
        received, out = ping(lab, "10.77.0.40", 5)
        assert received == 5, out


def test_bpf_filter_applies_and_a_bad_one_is_a_value_error(lab):
    with pytest.raises(ValueError, match="BPF"):
        mipfast.Stack(lab.iface, ip="10.77.0.60/24", bpf="this is (not a filter")
    # Without UDP the DHCP server is never heard: no lease, a clear socket.timeout (TimeoutError from 3.10).
    with mipfast.Stack(lab.iface, bpf="not udp") as stack:
        t = time.monotonic()
        with pytest.raises(socket.timeout, match="no address"):
            stack.wait_ready(timeout=0.5)
        assert 0.4 < time.monotonic() - t < 3
        assert stack.ip is None and not stack.ready
    with mipfast.Stack(lab.iface, ip="10.77.0.61/24", bpf="arp or icmp") as stack:
        received, out = ping(lab, "10.77.0.61", 3)
        assert received == 3, out


def test_ctrl_c_interrupts_a_blocking_poll(lab):
    code = (
        "import mipfast, sys\n"
        f"stack = mipfast.Stack({lab.iface!r}, ip='10.77.0.62/24')\n"
        "print('polling', flush=True)\n"
        "try:\n"
        "    while True:  # poll() returns on any frame: a user's loop\n"
        "        stack.poll()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "polling"
    time.sleep(0.3)
    out = stop(proc, signal.SIGINT, 10)[0]
    assert proc.returncode == 3 and "interrupted" in out


def test_kernel_is_refused_like_by_a_kernel(lab):
    """TCP to a closed port: RST (ConnectionRefusedError at once); UDP nobody
    receives: ICMP port unreachable (ConnectionRefusedError on a connected socket)."""
    code = (
        "import socket, sys, time\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    socket.create_connection(('10.77.0.70', 80), timeout=5)\n"
        "    print('tcp connected')\n"
        "except ConnectionRefusedError:\n"
        "    print('tcp refused %.3f' % (time.monotonic() - t))\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.settimeout(3)\n"
        "u.connect(('10.77.0.70', 9999))\n"
        "u.send(b'anyone?')\n"
        "try:\n"
        "    u.recv(100)\n"
        "    print('udp answered')\n"
        "except ConnectionRefusedError:\n"
        "    print('udp refused')\n"
        "except socket.timeout:\n"
        "    print('udp timeout')\n"
    )
    with mipfast.Stack(lab.iface, ip="10.77.0.70/24") as stack:
        stack.wait_ready(1)
        out = lab.run(sys.executable, "-c", code, timeout=30).stdout
        assert "tcp refused" in out and "udp refused" in out, out
        assert float(out.split("tcp refused ")[1].split()[0]) < 1.0, out
        c = stack.counters
        assert c["drop_tcp_no_listener"] >= 1 and c["drop_udp_no_listener"] >= 1
