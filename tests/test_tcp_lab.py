"""TCP through the stack with the Linux kernel as the peer."""

from __future__ import annotations

import array
import errno
import hashlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DEVICE
from helpers import linux_lab, peer_checksum_offload_off, ping_cmd, stop, wait_listening
from peer import pattern

import mipfast
import mipfast.bridge

ROOT = Path(__file__).resolve().parent.parent
PEER_PY = str(Path(__file__).resolve().parent / "peer.py")
STACK_IP = "10.77.0.2"
STACK_CIDR = f"{STACK_IP}/24"
#: A shell filter printing the SHA-256 of its input, on any platform (no sha256sum on macOS).
SHA256 = (
    f"{sys.executable} -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_50_mb_from_kernel_http_server(lab, tmp_path):
    body = os.urandom(50 << 20)
    (tmp_path / "big.bin").write_bytes(body)
    server = subprocess.Popen(
        lab.ns(sys.executable, "-m", "http.server", "8080", "--bind", lab.peer_ip, "-d", str(tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(lab, lab.peer_ip, 8080)
        r = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/http_get.py"),
                "-i",
                lab.iface,
                "--ip",
                STACK_CIDR,
                "--sha256",
                f"http://{lab.peer_ip}:8080/big.bin",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(len(body)), sha(body)]
        assert "HTTP 200" in r.stderr
    finally:
        server.kill()
        server.wait()


def test_curl_fetches_from_and_uploads_50_mb_to_a_mipfast_server(lab, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    from http_server import pattern as served

    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples/http_server.py"),
            "-i",
            lab.iface,
            "--ip",
            STACK_CIDR,
            "--port",
            "8000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert "serving on 10.77.0.2:8000" in line, server.stderr.read() if server.poll() else line
        size = 50 << 20
        r = lab.run(
            "sh", "-c", f"curl -sS --fail http://{STACK_IP}:8000/bytes/{size} | {SHA256}", timeout=120
        )
        assert r.stdout.split()[0] == sha(served(size))
        upload = os.urandom(size)
        (tmp_path / "up.bin").write_bytes(upload)
        r = lab.run(
            "curl",
            "-sS",
            "--fail",
            "-T",
            str(tmp_path / "up.bin"),
            f"http://{STACK_IP}:8000/upload",
            timeout=120,
        )
        assert r.stdout.split() == [str(size), sha(upload)]
    finally:
        stop(server, signal.SIGINT, 15, read=False)


@pytest.mark.parametrize("driven", [True, False], ids=["driver-thread", "self-polling"])
def test_bulk_both_ways_with_5_percent_loss_on_the_live_device(lab, peer, driven):
    size = 8 << 20
    data = pattern(size)
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR, faults={"loss": 0.05})
    try:
        if driven:
            stack.start()
        sink = peer(PEER_PY, "sink", "9001")
        with stack.connect((lab.peer_ip, 9001), timeout=60) as conn:
            conn.sendall(data)
        # Without a driver thread, what close() queued (the tail, the FIN)
        # goes out while someone polls, as with mg_mgr_poll.
        deadline = time.monotonic() + 60
        while sink.proc.poll() is None and time.monotonic() < deadline:
            stack.poll(timeout=0.05)
        assert sink.result().split() == [str(size), sha(data)]

        receive_intact(lab, peer, stack, 9002, size)
        faults = stack.fault_stats
        assert faults["rx"]["lost"] > 50 and faults["tx"]["lost"] > 50, faults
    finally:
        stack.close()


def test_bulk_both_ways_with_reordering_on_the_live_device(lab, peer):
    """5% of frames each way held back 3 ms (the frames behind them pass): SACK and
    recovery deliver both streams whole, and the held frames reach the engine."""
    size = 4 << 20
    data = pattern(size)
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR, faults={"reorder": 0.05, "reorder_delay_ms": 3})
    try:
        assert stack.faults is not None and stack.faults["reorder"] == 0.05
        stack.start()
        sink = peer(PEER_PY, "sink", "9011")
        with stack.connect((lab.peer_ip, 9011), timeout=60) as conn:
            conn.sendall(data)
        assert sink.result().split() == [str(size), sha(data)]
        receive_intact(lab, peer, stack, 9012, size)
        time.sleep(0.05)  # past the last hold
        faults = stack.fault_stats
        assert faults["rx"]["reordered"] > 10 and faults["tx"]["reordered"] > 10, faults
        assert stack.stats()["counters"]["frames_in"] >= faults["rx"]["passed"], "held frames were released"
    finally:
        stack.close()


def upload_intact(lab, peer, port: int, size: int, **stack_args) -> dict[str, int]:
    """Sends pattern(size) from a fresh stack to a kernel sink, checks it arrived
    whole, and returns the stack's counters."""
    data = pattern(size)
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, **stack_args) as stack:
        sink = peer(PEER_PY, "sink", str(port))
        with stack.connect((lab.peer_ip, port), timeout=10) as conn:
            conn.sendall(data)
        assert sink.result().split() == [str(size), sha(data)]
        return stack.counters


@linux_lab  # tcpdump
def test_a_trace_records_every_checksum_finished(lab, peer, tmp_path):
    """Where the device finishes TCP checksums (a burst's, and a lone
    segment's on the default device), a recording still shows what the wire
    carries: tcpdump finds every checksum we sent correct."""
    trace = tmp_path / "tcp.pcap"
    counters = upload_intact(lab, peer, 9013, 300_000, pcap_out=str(trace))
    if DEVICE == "auto":
        assert counters["bursts_out"] > 0, counters
    r = subprocess.run(["tcpdump", "-r", str(trace), "-nn", "-vv", "tcp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = [
        line
        for line in r.stdout.splitlines()
        if "cksum" in line and line.split(">")[0].strip().startswith(STACK_IP)
    ]
    assert len(ours) > 200, r.stdout[:2000]
    assert [line for line in ours if "incorrect" in line] == []
    assert all("(correct)" in line for line in ours), ours[:5]


@linux_lab  # ip link
def test_a_link_flap_is_lost_frames_not_a_kernel_refusing_bursts(lab, peer, caplog):
    """While the interface is down the kernel takes no frame at all (ENETDOWN).
    Those are frames lost, sent again once it is up; not a kernel that refuses
    our bursts, which would have every later burst cut in user space. The
    upload arrives whole and nothing says the kernel refused a burst."""
    caplog.set_level(logging.WARNING, logger="mipfast")
    size = 4 << 20
    data = pattern(size)
    mib = 1 << 20
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        sink = peer(PEER_PY, "sink", "9014")
        with stack.connect((lab.peer_ip, 9014), timeout=10) as conn:
            conn.sendall(data[:mib])
            time.sleep(0.3)  # all acknowledged: the send buffer is empty
            subprocess.run(["ip", "link", "set", lab.iface, "down"], check=True)
            try:
                sent = conn.send(data[mib : 2 * mib])  # queued at once; its bursts fail
                time.sleep(0.05)
            finally:
                subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)
            conn.sendall(data[mib + sent :])
        assert sink.result().split() == [str(size), sha(data)]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == []


@pytest.mark.parametrize("offload", [True, False], ids=["kernel-gso", "frame-by-frame"])
@linux_lab  # ethtool
def test_upload_with_and_without_kernel_segmentation_offload(lab, peer, offload):
    # Our side of the veth offloads nothing either, so the kernel cuts and
    # checksums each burst in software, as it does its own TCP output.
    subprocess.run(["ethtool", "-K", lab.iface, "tso", "off", "gso", "off", "tx", "off"], check=True)
    try:
        size = 20 << 20
        counters = upload_intact(lab, peer, 9004, size, segment_offload=offload)
        assert counters["frames_out"] > size // 1448
        if offload and DEVICE == "auto":
            assert counters["bursts_out"] > 100, counters
        else:  # frame by frame, or libpcap, which sends one frame a time
            assert counters["bursts_out"] == 0, counters
    finally:
        subprocess.run(["ethtool", "-K", lab.iface, "tso", "on", "gso", "on", "tx", "on"], check=False)


def test_sendall_holds_bytes_by_reference_and_copies_what_may_change(lab, peer):
    """A large `bytes`, or a view of one, is queued by reference (kept until
    acknowledged); a `bytearray`, or a view of one, is copied, so changing it
    after `sendall` changes nothing sent."""
    big, other = pattern(6 << 20), pattern(5 << 20)[::-1]
    mutable, viewed = bytearray(pattern(300_000)[::-1]), bytearray(pattern(200_000))
    sent_mutable, sent_viewed = bytes(mutable), bytes(viewed)
    small = pattern(1000)
    before = sys.getrefcount(big), sys.getrefcount(other)
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        sink = peer(PEER_PY, "sink", "9007")
        with stack.connect((lab.peer_ip, 9007), timeout=10) as conn:
            conn.sendall(big)
            conn.sendall(mutable)
            mutable[:] = bytes(len(mutable))  # after sendall: must not show
            conn.sendall(memoryview(viewed)[1:])
            viewed[:] = bytes(len(viewed))  # the same through a view
            conn.sendall(small)
            conn.sendall(memoryview(other)[1000:])
            # Whether that is still held depends on how soon the sink acknowledged
            # it. A peer that never reads acknowledges at most its window, so
            # the rest of a view sent to it is held for certain.
            peer(PEER_PY, "silent", "9008")
            stalled = stack.connect((lab.peer_ip, 9008), timeout=10)
            assert stalled.send(memoryview(other)[1000:]) > 1 << 20
            assert sys.getrefcount(other) > before[1], "a view of bytes is held too"
            # To a second peer that never reads, `bytes` themselves are held too. (Checked after
            # the sink's `sendall`, this depended on the sink not acknowledging 4 MiB before the
            # next line ran, and a busy host broke it.)
            peer(PEER_PY, "silent", "9013")
            held = stack.connect((lab.peer_ip, 9013), timeout=10)
            assert held.send(big) > 1 << 20
            assert sys.getrefcount(big) > before[0], "held by reference"
            held.abort()
            stalled.abort()  # a reset: what it held is let go
            assert conn.send(big) > 0  # what fits, by reference too
        expected = big + sent_mutable + sent_viewed[1:] + small + other[1000:]
        size, digest = sink.result().split()
        # `send` queued a prefix of `big`: whatever it took, all arrived in order.
        extra = int(size) - len(expected)
        assert 0 < extra <= len(big)
        assert digest == sha(expected + big[:extra])
        assert stack.counters["frames_out"] > 0  # a call into the stack applies deferred releases
    assert (sys.getrefcount(big), sys.getrefcount(other)) == before, "every reference was let go"


def receive_intact(lab, peer, stack, port: int, size: int) -> None:
    """The kernel in the namespace sends `size` bytes (the pattern) to `stack`; they arrive whole."""
    peer(PEER_PY, "source", str(port), str(size))
    digest = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 16)
    with stack.connect((lab.peer_ip, port), timeout=60) as conn:
        while n := conn.recv_into(buf):
            digest.update(buf[:n])
            got += n
    assert (got, digest.hexdigest()) == (size, sha(pattern(size)))


def download_intact(lab, peer, port: int, size: int, **stack_args) -> dict[str, int]:
    """`receive_intact` on a fresh stack; returns its counters."""
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, **stack_args) as stack:
        receive_intact(lab, peer, stack, port, size)
        return stack.counters


@pytest.mark.parametrize("reader", ["ring", "recvmmsg"])
@pytest.mark.parametrize("peer_tso", [True, False], ids=["tso", "checksum-only"])
@linux_lab  # ethtool
def test_download_with_the_peers_offloads_on(lab, peer, peer_tso, reader, monkeypatch):
    # The kernel side at its defaults sends 64 KiB super-frames (TSO over
    # veth) with checksums left partial: the virtio-net header says so, and
    # the stack takes each burst whole without summing it. This is the Linux
    # path's (libpcap cannot see the offload state), so under
    # MIPFAST_DEVICE=pcap too the test runs it, with the peer's offloads on.
    # Both readers: the mapped ring (bursts beside their slots, through the
    # socket's queue) and recvmmsg, what a kernel without the ring gets.
    if reader == "recvmmsg":
        monkeypatch.setenv("MIPFAST_PACKET_RING", "0")
    on = "on" if peer_tso else "off"
    subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", "on", "tso", on, "gso", on), check=True)
    try:
        size = 30 << 20
        counters = download_intact(lab, peer, 9005, size, device="auto")
        assert counters["checksums_offloaded_in"] > 100, counters
        assert counters["drop_tcp_bad_checksum"] == 0, counters
        if peer_tso:
            assert counters["bursts_in"] > 50, counters
            assert counters["frames_in"] < size // 1448, "bursts arrive whole"
        if peer_tso and reader == "ring":
            # Bursts wait on the socket's queue beside their slots: their
            # text goes from there straight to its place.
            assert counters["texts_held_in"] > 50, counters
            assert counters["drop_rx_unread"] == 0, counters
    finally:
        tx = "on" if lab.offloads else "off"
        subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", tx, "tso", "on", "gso", "on"), check=False)


@pytest.mark.parametrize("offload", [True, False], ids=["kernel-gso", "frame-by-frame"])
@linux_lab  # tc
def test_frames_pass_the_queueing_discipline_and_recover_its_drops(lab, peer, offload):
    # A token bucket with a tiny queue on our side: frames go through it, as
    # the kernel's own do, and what it drops the stack retransmits.
    shape = ["tc", "qdisc", "replace", "dev", lab.iface, "root", "tbf", "rate", "300mbit"]
    subprocess.run([*shape, "burst", "32kb", "limit", "20kb"], check=True)
    try:
        refused = upload_intact(lab, peer, 9006, 6 << 20, segment_offload=offload)["drop_tx_error"]
        stats = subprocess.run(
            ["tc", "-s", "qdisc", "show", "dev", lab.iface], capture_output=True, text=True
        ).stdout
        dropped = int(stats.split("dropped ")[1].split(",")[0])
        assert dropped > 0 and refused > 0, (stats, refused)
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", lab.iface, "root"], check=False)


def test_kernel_client_through_a_listener(lab, peer):
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack, stack.listen(7000, backlog=4) as server:
        assert server.getsockname() == (STACK_IP, 7000)
        client = peer(PEER_PY, "client", STACK_IP, "7000", str(3 << 20), ready=None)
        conn, (ip, port) = server.accept(timeout=10)
        assert ip == lab.peer_ip and port > 1024
        assert conn.getpeername() == (ip, port) and conn.getsockname() == (STACK_IP, 7000)
        with conn:
            buf = bytearray(1 << 16)
            while n := conn.recv_into(buf):
                conn.sendall(buf[:n])
        data = pattern(3 << 20)
        assert client.result().split() == [str(len(data)), sha(data)]


BURST_CLIENTS = """
import socket, sys
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = bytes(range(256)) * (size // 256)
socks = []
for _ in range(n):  # every SYN at once
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    socks.append(s)
ok = 0
for s in socks:
    s.settimeout(30)
    s.sendall(data)  # waits for the handshake
    s.shutdown(socket.SHUT_WR)
    back = b""
    while chunk := s.recv(65536):
        back += chunk
    ok += back == data
print("ok", ok, flush=True)
"""


def test_syn_cookies_let_a_burst_of_kernel_clients_in(lab):
    n = 40
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack, stack.listen(7002, backlog=2) as server:
        clients = subprocess.Popen(
            lab.ns(sys.executable, "-c", BURST_CLIENTS, STACK_IP, "7002", str(n), str(64 << 10)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def echo(conn: mipfast.Connection) -> None:
            with conn:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk)

        threads = []
        for _ in range(n):
            conn, _ = server.accept(timeout=30)
            threads.append(threading.Thread(target=echo, args=(conn,)))
            threads[-1].start()
        out, err = clients.communicate(timeout=60)
        for t in threads:
            t.join(10)
        assert out.split() == ["ok", str(n)], err
        info = stack.tcp_info
        # Backlog 2 against 40 SYNs at once: the rest were answered with cookies.
        assert info["syn_cookies_sent"] > 0 and info["syn_cookies_accepted"] > 0, info


def test_recv_and_sendall_from_two_threads(lab, peer):
    peer(PEER_PY, "echo", "9003")
    data = pattern(4 << 20)
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR)  # no driver: the blocked calls poll
    try:
        conn = stack.connect((lab.peer_ip, 9003), timeout=10)
        received = bytearray()

        def reader() -> None:
            while len(received) < len(data) and (chunk := conn.recv(1 << 16)):
                received.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        conn.sendall(data)
        t.join(60)
        assert not t.is_alive()
        assert bytes(received) == data
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(10) == b""  # the echo server closes after our FIN
        conn.close()
        with pytest.raises(OSError) as e:
            conn.recv(1)
        assert e.value.errno == errno.EBADF
    finally:
        stack.close()


@pytest.mark.parametrize("driven", [True, False], ids=["driver-thread", "self-polling"])
def test_many_blocked_threads_each_get_their_own_data(lab, peer, driven):
    """Eight threads blocked in recv on eight connections, one in accept and one
    closing under another: whoever polls the device (the driver, the first
    caller to block, a newer one taking over), every call wakes for its own
    socket and gets its own bytes."""
    peer(PEER_PY, "echo", "9006")
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR)
    try:
        if driven:
            stack.start()
        listener = stack.listen(7006)
        accepted: list[mipfast.Connection] = []
        acceptor = threading.Thread(target=lambda: accepted.append(listener.accept(timeout=60)[0]))
        acceptor.start()  # blocked first: it leads until a reader takes over
        conns = [stack.connect((lab.peer_ip, 9006), timeout=10) for _ in range(8)]
        got: dict[int, bytes] = {}

        def reader(i: int) -> None:
            want = 1000 + i
            data = b""
            while len(data) < want and (chunk := conns[i].recv(65536)):
                data += chunk
            got[i] = data

        readers = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in readers:
            t.start()
        time.sleep(0.2)  # every reader blocked
        for i in (5, 2, 7, 0, 3, 6, 1, 4):
            conns[i].sendall(bytes([i]) * (1000 + i))
            time.sleep(0.01)
        for t in readers:
            t.join(30)
        assert all(not t.is_alive() for t in readers)
        assert got == {i: bytes([i]) * (1000 + i) for i in range(8)}

        # A kernel client reaches the listener the acceptor waits on.
        client = subprocess.Popen(lab.ns(sys.executable, "-c", CONNECT_AND_WAIT, STACK_IP, "7006"))
        acceptor.join(30)
        assert not acceptor.is_alive() and len(accepted) == 1
        accepted[0].close()
        client.wait(10)

        # Closing a connection wakes the thread blocked on it: the end of the
        # stream once the peer answers our FIN, or EBADF if it is gone first.
        outcome: list[BaseException | bytes] = []

        def blocked_reader() -> None:
            try:
                outcome.append(conns[0].recv(10))
            except OSError as e:
                outcome.append(e)

        t = threading.Thread(target=blocked_reader)
        t.start()
        time.sleep(0.2)
        conns[0].close()
        t.join(10)
        assert not t.is_alive()
        ended = outcome[0] == b"" or (isinstance(outcome[0], OSError) and outcome[0].errno == errno.EBADF)
        assert ended, outcome
        for c in conns[1:]:
            c.close()
    finally:
        stack.close()


def test_a_call_taking_over_briefly_leaves_the_device_polled(lab, peer):
    """An accept that has led for long, a recv that takes over and returns
    within the lease: the driver, aside behind the old leader, must poll again,
    or nothing would run the rounds the accept now waits on as a follower."""
    peer(PEER_PY, "echo", "9007")
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack, stack.listen(7007) as listener:
        conn = stack.connect((lab.peer_ip, 9007), timeout=10)
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        accepted: list[mipfast.Connection] = []
        acceptor = threading.Thread(target=lambda: accepted.append(listener.accept(timeout=10)[0]))
        acceptor.start()
        time.sleep(0.05)  # the acceptor leads, for longer than a lease
        # A frame while it leads: the driver wakes and steps aside behind it.
        lab.run(*ping_cmd(STACK_IP, 1, wait=2))
        time.sleep(0.05)
        # Takes over (the echo is not back yet) and leaves within the lease.
        conn.sendall(b"y")
        assert conn.recv(1) == b"y"
        client = subprocess.Popen(lab.ns(sys.executable, "-c", CONNECT_AND_WAIT, STACK_IP, "7007"))
        acceptor.join(15)
        assert not acceptor.is_alive() and len(accepted) == 1
        accepted[0].close()
        client.wait(10)
        conn.close()


@pytest.mark.parametrize("reader", ["ring", "recvmmsg"])
@linux_lab  # the receive ring is the Linux path's
def test_a_reply_waiting_in_the_ring_is_read_by_the_call_itself(lab, peer, reader, monkeypatch):
    """Nothing polls the device between calls here (no driver thread), so each
    echoed reply waits in the receive ring until `recv`. That call sees it there
    and runs the round itself, its GIL kept (`rounds_in_passing`), instead of
    blocking to lead a round. A reader without a ring cannot tell that frames wait
    without a system call: it takes the blocking way, with the same bytes."""
    if reader == "recvmmsg":
        monkeypatch.setenv("MIPFAST_PACKET_RING", "0")
    peer(PEER_PY, "echo", "9008")
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR, device="auto")
    try:
        conn = stack.connect((lab.peer_ip, 9008), timeout=10)
        before = stack.stats()["counters"]["rounds_in_passing"]
        for i in range(20):
            request = f"request {i}".encode() * (i + 1)
            conn.sendall(request)
            time.sleep(0.02)  # the reply is back, in the ring, untouched
            reply = b""
            while len(reply) < len(request):
                reply += conn.recv(4096)
            assert reply == request
        in_passing = stack.stats()["counters"]["rounds_in_passing"] - before
        if reader == "ring":
            assert in_passing >= 15, in_passing
        else:
            assert in_passing == 0
        conn.close()
    finally:
        stack.close()


@linux_lab  # the receive ring is the Linux path's
def test_a_client_takes_the_reply_to_its_request_itself_after_a_pause(lab, peer):
    """After a pause the driver thread watches the device again, and the reply to
    the next request would wake it: a thread switch more per request than a
    kernel client makes, and a cross-CPU wake-up where the driver last ran on
    another core. A client's request (no listener, no UDP socket, no one else
    waiting) therefore starts a lease: the driver, woken by the reply, stays
    aside, and the caller's `recv` runs the round itself (`rounds_in_passing`)."""
    peer(PEER_PY, "echo", "9009")
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR, device="auto")
    try:
        stack.start()
        conn = stack.connect((lab.peer_ip, 9009), timeout=10)
        before = stack.stats()["counters"]["rounds_in_passing"]
        for i in range(20):
            time.sleep(0.01)  # past the last lease and the driver's late look
            request = f"request {i}".encode()
            conn.sendall(request)
            time.sleep(0.0003)  # within the lease: the reply is back, in the ring
            reply = b""
            while len(reply) < len(request):
                reply += conn.recv(4096)
            assert reply == request
        in_passing = stack.stats()["counters"]["rounds_in_passing"] - before
        assert in_passing >= 15, in_passing
        conn.close()
    finally:
        stack.close()


CONNECT_AND_WAIT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(10)
s.recv(1)
"""


def test_recv_flags_peek_dontwait_waitall(lab, peer):
    peer(PEER_PY, "echo", "9005")
    with (
        mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack,
        stack.connect((lab.peer_ip, 9005), timeout=10) as conn,
    ):
        with pytest.raises(BlockingIOError):  # blocking connection, one call that is not
            conn.recv(10, socket.MSG_DONTWAIT)
        with pytest.raises(OSError) as e:
            conn.recv(10, socket.MSG_OOB)
        assert e.value.errno == errno.EOPNOTSUPP
        conn.sendall(b"hello world")
        deadline = time.monotonic() + 10
        while len(conn.recv(100, socket.MSG_PEEK)) < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.recv(5, socket.MSG_PEEK) == b"hello"
        buf = bytearray(11)
        assert conn.recv_into(buf, 0, socket.MSG_PEEK | socket.MSG_DONTWAIT) == 11
        assert bytes(buf) == b"hello world"
        assert conn.recv(100) == b"hello world"  # peeking consumed nothing
        with pytest.raises(BlockingIOError):
            conn.recv(10, socket.MSG_DONTWAIT)
        # MSG_WAITALL: one call returns the whole amount...
        data = pattern(300_000)
        conn.sendall(data)
        assert conn.recv(len(data), socket.MSG_WAITALL) == data
        buf = bytearray(100_000)
        conn.sendall(data[:100_000])
        assert conn.recv_into(buf, 0, socket.MSG_WAITALL) == 100_000 and buf == data[:100_000]
        # ...or what came before the timeout, never losing it...
        conn.settimeout(0.3)
        conn.sendall(b"0123456789")
        start = time.monotonic()
        assert conn.recv(100, socket.MSG_WAITALL) == b"0123456789"
        assert time.monotonic() - start >= 0.25
        with pytest.raises(socket.timeout):  # nothing at all: the timeout as usual
            conn.recv(100, socket.MSG_WAITALL)
        with pytest.raises(OSError) as e:
            conn.recv(10, socket.MSG_WAITALL | socket.MSG_PEEK)
        assert e.value.errno == errno.EOPNOTSUPP
        # ...or what came before the end of the stream.
        conn.settimeout(10)
        conn.sendall(b"tail")
        conn.shutdown(socket.SHUT_WR)  # the echo server closes after our FIN
        assert conn.recv(100, socket.MSG_WAITALL) == b"tail"
        assert conn.recv(100, socket.MSG_WAITALL) == b""


def test_so_rcvbuf_bounds_what_waits_unread(lab, peer):
    n = 24 << 20
    peer(PEER_PY, "source", "9006", str(n))
    small = 64 << 10
    with (
        mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack,
        stack.connect((lab.peer_ip, 9006), timeout=10) as conn,
    ):
        assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 4 << 20
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, small)
        assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == small

        def unread() -> int:
            time.sleep(0.5)  # the source fills whatever window it has
            return next(c["recv_queued"] for c in stack.connections() if c["remote"] == (lab.peer_ip, 9006))

        # The window offered before stands: the source may fill it...
        got = bytearray()
        assert unread() > small
        # ...and once it has been read through, no more than the new buffer waits.
        while len(got) < 12 << 20:
            got += conn.recv(1 << 20)
        queued = unread()
        assert 0 < queued <= small, queued
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # and larger again
        assert unread() > 1 << 20
        while chunk := conn.recv(1 << 20):
            got += chunk
        assert len(got) == n and got == pattern(n)


LATE_READER_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(b"x" * (12 << 20))
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b"k"
"""


def _window_probes(lab) -> int:
    """Zero-window probes the kernel peer has sent (TcpExtTCPWinProbe)."""
    return int(lab.run("nstat", "-az", "TcpExtTCPWinProbe").stdout.split()[-2])


@linux_lab  # nstat in the namespace
def test_an_accepted_connection_tells_the_sender_when_a_late_reader_empties_its_buffer(lab):
    probes = _window_probes(lab)
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack, stack.listen(9007) as listener:
        client = subprocess.Popen(lab.ns(sys.executable, "-c", LATE_READER_CLIENT, STACK_IP, "9007"))
        conn, _ = listener.accept(10)
        time.sleep(0.1)  # the reader is late: the buffer fills and the window shuts
        got = 0
        while chunk := conn.recv(1 << 20):
            got += len(chunk)
        conn.sendall(b"k")
        conn.close()
        assert client.wait(30) == 0 and got == 12 << 20
    # The window update went as the reader emptied the buffer: the sender had no
    # need to probe the shut window (its persist timer waits 200 ms at least).
    assert _window_probes(lab) == probes


def test_closed_port_is_refused(lab):
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack, pytest.raises(ConnectionRefusedError):
        stack.connect((lab.peer_ip, 1), timeout=5)


@linux_lab  # ip link
def test_vanished_peer_raises_timeout_within_the_retry_limit(lab, peer):
    peer(PEER_PY, "silent", "9004")
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        conn = stack.connect((lab.peer_ip, 9004), timeout=5)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1500)
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500
        lab.run("ip", "link", "set", lab.peer, "down")
        try:
            conn.sendall(b"x" * 100_000)
            start = time.monotonic()
            # ETIMEDOUT, an OSError with its errno (TimeoutError), not socket.timeout
            with pytest.raises(TimeoutError) as e:
                conn.recv(10)
            assert e.value.errno == errno.ETIMEDOUT
            assert time.monotonic() - start < 10
            with pytest.raises(TimeoutError):
                conn.send(b"more")
        finally:
            lab.run("ip", "link", "set", lab.peer, "up")
            lab.run("ip", "addr", "replace", f"{lab.peer_ip}/24", "dev", lab.peer)
        conn.close()


def test_socket_timeouts_and_ctrl_c(lab, peer):
    peer(PEER_PY, "silent", "9005")
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        conn = stack.connect((lab.peer_ip, 9005), timeout=5)
        assert conn.gettimeout() == 5
        conn.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.recv(1)
        assert 0.15 < time.monotonic() - start < 2
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn.recv(1)
        conn.settimeout(None)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            conn.recv(1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with pytest.raises(OSError) as e:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        assert e.value.errno == errno.ENOPROTOOPT
        assert "ESTABLISHED" in repr(conn)

        # A listener's own timeout, as socket.settimeout gives accept().
        with stack.listen(7007) as listener:
            assert listener.gettimeout() is None and listener.getblocking()
            listener.settimeout(0.2)
            assert listener.gettimeout() == 0.2 == listener.timeout
            assert (listener.family, listener.type, listener.proto) == (
                socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
            )
            with pytest.raises(socket.timeout):
                listener.accept()
            listener.setblocking(False)
            assert not listener.getblocking() and listener.gettimeout() == 0.0
            with pytest.raises(BlockingIOError):
                listener.accept()
            with pytest.raises(socket.timeout):
                listener.accept(timeout=0.1)  # the call's own timeout wins
            with pytest.raises(ValueError):
                listener.settimeout(-1)
    with pytest.raises(OSError) as e:
        conn.send(b"after the stack closed")
    assert e.value.errno == errno.EBADF


def test_integer_arguments_are_as_lenient_as_the_stdlib(lab):
    """listen() takes any int (negative means 0, which still admits one
    connection, as on Linux); negative buffer sizes are the stdlib's ValueError."""
    kernel = socket.socket()
    kernel.bind(("127.0.0.1", 0))
    kernel.listen(-1)  # the reference: no error
    kernel.close()
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        with stack.listen(9041, backlog=-1) as server:
            client = subprocess.Popen(
                lab.ns(
                    sys.executable,
                    "-c",
                    f"import socket; socket.create_connection(('{STACK_IP}', 9041), 5).sendall(b'hi')",
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            conn, _ = server.accept(timeout=10)
            with conn:
                conn.settimeout(5)
                assert conn.recv(2, socket.MSG_WAITALL) == b"hi"
                with pytest.raises(ValueError, match="negative buffersize in recv"):
                    conn.recv(-1)
                with pytest.raises(ValueError, match="negative buffersize in recv_into"):
                    conn.recv_into(bytearray(4), -1)
            assert client.wait(10) == 0, client.stderr.read()
        assert stack.listen(9042, backlog=1 << 40).port == 9042  # capped, as SOMAXCONN caps it
        udp = stack.udp(("0.0.0.0", 9043))
        for call in (lambda: udp.recvfrom(-1), lambda: udp.recv(-5)):
            with pytest.raises(ValueError, match="negative buffersize"):
                call()
        with pytest.raises(ValueError, match="negative buffersize in recvfrom_into"):
            udp.recvfrom_into(bytearray(4), -1)
        with pytest.raises(ValueError):
            stack.ping(lab.peer_ip, count=-1)


def test_any_bytes_like_object_goes_as_its_raw_bytes_as_with_the_stdlib(lab, peer, stack):
    """Sends and reads take any buffer as its bytes, whatever its items (an array of ints, a 2-D
    view), as a kernel socket does; what a kernel socket refuses is refused with its exception."""
    peer(PEER_PY, "echo", "9044")
    ints = array.array("i", [1, -2, 3])
    grid = memoryview(bytearray(b"abcdefgh")).cast("B", (2, 4))
    refused = {
        "sendall strided": lambda s: s.sendall(memoryview(b"abcdef")[::2]),
        "recv_into bytes": lambda s: s.recv_into(b"xxxx"),
        "sendall str": lambda s: s.sendall("text"),
    }
    kernel, other = socket.socketpair()
    with kernel, other:
        kernel_errors = {}
        for name, call in refused.items():
            with pytest.raises(Exception) as e:
                call(kernel)
            kernel_errors[name] = type(e.value)
    with stack.connect((lab.peer_ip, 9044), timeout=10) as conn:
        conn.settimeout(10)
        conn.sendall(ints)
        back = array.array("i", [0, 0, 0])
        got = 0
        while got < len(ints) * ints.itemsize:
            got += conn.recv_into(memoryview(back).cast("B")[got:])
        assert back == ints
        conn.sendall(grid)
        assert conn.recv(8, socket.MSG_WAITALL) == b"abcdefgh"
        conn.sendall(b"\x01\x00\x00\x00")
        into = array.array("i", [0])
        assert conn.recv_into(into) == 4 and into[0] == 1
        for name, call in refused.items():
            with pytest.raises(kernel_errors[name]):
                call(conn)
    with stack.udp() as udp:
        assert udp.sendto(ints, (lab.peer_ip, 9)) == len(ints) * ints.itemsize


def test_addresses_are_taken_as_the_stdlib_takes_them(lab, peer, stack):
    """A host given as bytes or bytearray connects, sends and binds, as with a kernel socket; a
    malformed address is refused with the exception a kernel socket raises for it."""
    peer(PEER_PY, "echo", "9045")
    peer(PEER_PY, "udp-echo", "9046")
    ip = lab.peer_ip
    for host in (ip.encode(), bytearray(ip.encode())):
        with stack.connect((host, 9045), timeout=10) as conn:
            conn.settimeout(10)
            conn.sendall(b"ping")
            assert conn.recv(4, socket.MSG_WAITALL) == b"ping"
            assert conn.getpeername() == (ip, 9045)
    with stack.udp((b"0.0.0.0", 0)) as udp:
        udp.settimeout(10)
        assert udp.getsockname()[0] == "0.0.0.0"
        udp.sendto(b"one", (bytearray(ip.encode()), 9046))
        assert udp.recvfrom(16) == (b"one", (ip, 9046))
        assert udp.sendto(b"two", 0, (ip, 9046)) == 3, "sendto(data, flags, address), as the stdlib's"
        assert udp.recvfrom(16) == (b"two", (ip, 9046))
        assert (udp.proto, udp.timeout) == (socket.IPPROTO_UDP, 10.0)
        udp.connect((ip.encode(), 9046))
        assert udp.getpeername() == (ip, 9046)
    malformed = {
        "a string": f"{ip}:9045",
        "one item": (ip,),
        "three items": (ip, 9045, 0),
        "an int host": (1, 9045),
        "a str port": (ip, "9045"),
        "a float port": (ip, 9045.0),
        "a port too big": (ip, 70000),
        "a negative port": (ip, -1),
        "a huge port": (ip, 1 << 70),
    }
    kernel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # its connect() sends nothing
    with kernel:
        expected = {}
        for name, address in malformed.items():
            with pytest.raises(Exception) as e:
                kernel.connect(address)
            expected[name] = type(e.value)
    assert expected["a string"] is TypeError and expected["a port too big"] is OverflowError
    with stack.udp() as udp:
        for name, address in malformed.items():
            with pytest.raises(expected[name]):
                stack.connect(address, timeout=1)
            with pytest.raises(expected[name]):
                udp.sendto(b"x", address)
            with pytest.raises(expected[name]):
                udp.connect(address)
    with pytest.raises(TypeError):
        stack.udp(("0.0.0.0",))


def test_what_a_socket_composes_from_its_calls_works_on_a_connection(lab, peer, stack, tmp_path):
    """send/sendall flags, sendmsg/recvmsg/recvmsg_into, recvfrom, sendfile and the timeout
    attribute, with a socket.socket's arguments, results and errors."""
    peer(PEER_PY, "echo", "9049")
    sink = peer(PEER_PY, "sink", "9050")
    with stack.connect((lab.peer_ip, 9049), timeout=10) as conn:
        conn.settimeout(7)
        assert conn.timeout == 7.0
        assert conn.send(b"ab", 0) == 2
        conn.sendall(b"cd", getattr(socket, "MSG_NOSIGNAL", 0))
        assert conn.recv(4, socket.MSG_WAITALL) == b"abcd"
        with pytest.raises(OSError) as e:
            conn.send(b"x", socket.MSG_OOB)
        assert e.value.errno == errno.EOPNOTSUPP
        assert conn.sendmsg([b"ef", bytearray(b"gh"), memoryview(b"ij")]) == 6
        assert conn.recvmsg(6, 0, socket.MSG_WAITALL) == (b"efghij", [], 0, None)
        with pytest.raises(OSError):
            conn.sendmsg([b"k"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(4))])
        conn.sendall(b"lmnopq")
        first, second = bytearray(2), bytearray(4)
        assert conn.recvmsg_into([first, second], 0, socket.MSG_WAITALL) == (6, [], 0, None)
        assert (first, second) == (b"lm", b"nopq")
        conn.sendall(b"r")
        assert conn.recvfrom(1) == (b"r", None), "a stream socket's sender is None, as the kernel's"
        conn.sendall(b"st")
        into = bytearray(2)
        assert conn.recvfrom_into(into, 0, socket.MSG_WAITALL) == (2, None) and into == b"st"

    data = pattern((3 << 20) + 17)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    with stack.connect((lab.peer_ip, 9050), timeout=10) as conn, open(path, "rb") as f:
        f.seek(1000)  # a position of its own: sendfile's offset counts from the start
        assert conn.sendfile(f, offset=5, count=1 << 20) == 1 << 20
        assert f.tell() == 5 + (1 << 20)
        assert conn.sendfile(f, offset=5 + (1 << 20)) == len(data) - 5 - (1 << 20)
        assert f.tell() == len(data)
        with open(path) as text, pytest.raises(ValueError, match="binary mode"):
            conn.sendfile(text)
        for count, error in ((0, ValueError), (-1, ValueError), ("1", TypeError)):
            with pytest.raises(error):
                conn.sendfile(f, count=count)
        conn.setblocking(False)
        with pytest.raises(ValueError, match="non-blocking"):
            conn.sendfile(f)
    n, digest = sink.result(30).split()
    assert int(n) == len(data) - 5 and digest == hashlib.sha256(data[5:]).hexdigest()


def _state_of(stack: mipfast.Stack, local: tuple[str, int]) -> str | None:
    states = [c["state"] for c in stack.connections() if tuple(c["local"]) == tuple(local)]
    return states[0] if states else None


def test_so_linger_resets_or_waits_for_the_fin_as_a_kernel_socket_does(lab, peer, stack):
    """SO_LINGER with no time: close() resets the connection, queued data dropped. With a time:
    close() returns once the peer has acknowledged everything and the FIN (or when the time is
    up, the close going on in the stack). On a native connection and on a bridged socket."""
    endings = peer(PEER_PY, "endings", "9047", "4")
    abortive, lingering = struct.pack("ii", 1, 0), struct.pack("ii", 1, 30)
    data = pattern(1 << 20)

    # No time, native: a reset, whatever was still queued.
    conn = stack.connect((lab.peer_ip, 9047), timeout=10)
    assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER) == 0
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, abortive)
    assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == abortive
    assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER) == 1, "its first int, as the kernel's"
    conn.sendall(b"x")
    time.sleep(0.2)  # read by the peer: only the reset ends it
    conn.close()

    # A time, native: close() returns with everything acknowledged, FIN included.
    conn = stack.connect((lab.peer_ip, 9047), timeout=10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, lingering)
    conn.sendall(data)
    local = conn.getsockname()
    conn.close()
    assert _state_of(stack, local) in ("FIN_WAIT_2", "TIME_WAIT", None)

    # No time, bridged (a genuine socket.socket over the connection): a reset too.
    conn = stack.connect((lab.peer_ip, 9047), timeout=10)
    sock = mipfast.bridge.socket_for(conn)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, abortive)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == abortive
    sock.fileno()  # the bridge is made: its end of stream would be a FIN
    sock.sendall(b"y")
    time.sleep(0.2)
    sock.close()

    # Off again: the usual FIN.
    conn = stack.connect((lab.peer_ip, 9047), timeout=10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, abortive)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    conn.sendall(b"z")
    conn.close()

    assert endings.result(30).splitlines() == ["reset 1", f"eof {len(data)}", "reset 1", "eof 1"]


def test_a_lingering_close_ends_when_its_time_is_up(lab, peer, stack):
    """A peer that reads nothing: close() with SO_LINGER returns when its time is up, the FIN
    still unacknowledged, and the close goes on in the stack."""
    peer(PEER_PY, "silent", "9048")
    conn = stack.connect((lab.peer_ip, 9048), timeout=10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
    conn.sendall(pattern(2 << 20))
    local = conn.getsockname()
    kernel = socket.socket()
    with kernel:
        for value in (1, b"\x01\x00\x00\x00"):  # too short for the struct
            with pytest.raises(OSError) as e:
                kernel.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, value)
            with pytest.raises(OSError) as ours:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, value)
            assert ours.value.errno == e.value.errno == errno.EINVAL
    conn.close()
    assert _state_of(stack, local) == "FIN_WAIT_1", "returned at its time, the close going on"


@linux_lab  # ethtool (the macOS job runs everything on libpcap)
def test_the_portable_libpcap_path_carries_traffic(lab, peer):
    """device="pcap": frames leave through pcap_sendpacket, as on macOS (the whole suite
    also runs this way under MIPFAST_DEVICE=pcap)."""
    with pytest.raises(ValueError, match="device"):
        mipfast.Stack(lab.iface, ip=STACK_CIDR, device="bpf")
    if lab.offloads:
        # libpcap cannot tell a partial checksum from a bad one: the peer's
        # offloaded segments are dropped, counted (the README's gotcha).
        refused = peer(PEER_PY, "sink", "9030")
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, device="pcap") as stack:
            with pytest.raises(socket.timeout):
                stack.connect((lab.peer_ip, 9030), timeout=1)
            assert stack.counters["drop_tcp_bad_checksum"] > 0
        refused.stop()
    sink = peer(PEER_PY, "sink", "9031")
    with peer_checksum_offload_off(lab), mipfast.Stack(lab.iface, ip=STACK_CIDR, device="pcap") as stack:
        assert stack.device == "pcap"
        assert all(stack.ping(lab.peer_ip, count=3, timeout=2))
        data = pattern(4 << 20)
        with stack.connect((lab.peer_ip, 9031), timeout=5) as conn:
            conn.sendall(data)
        n, digest = sink.result().split()
        assert int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
        assert stack.counters["bursts_out"] == 0, "libpcap sends frame by frame"


def test_a_connect_to_an_address_nobody_answers_fails_as_no_route_to_host(lab, stack):
    """As the kernel's connect(): once ARP for an address on the link goes unanswered
    (3 requests, 1 s apart), EHOSTUNREACH, not a SYN retried until the timeout."""
    nobody = lab.peer_ip.rsplit(".", 1)[0] + ".99"
    start = time.monotonic()
    with pytest.raises(OSError) as failed:
        stack.connect((nobody, 80), timeout=20)
    assert failed.value.errno == errno.EHOSTUNREACH
    assert time.monotonic() - start < 6
    assert stack.connections() == []


def _tcp_flags_sent(pcap: bytes, port: int) -> list[int]:
    """The TCP flags of each segment the stack sent from `port`, from a `.pcap` of its
    frames (Ethernet, IPv4 without options, as the stack sends them)."""
    flags, at = [], 24  # past the file header
    while at + 16 <= len(pcap):
        length = int.from_bytes(pcap[at + 8 : at + 12], "little")
        frame = pcap[at + 16 : at + 16 + length]
        at += 16 + length
        if frame[12:14] == b"\x08\x00" and frame[23] == 6 and int.from_bytes(frame[34:36], "big") == port:
            flags.append(frame[47])
    return flags


def test_a_stack_started_again_reuses_a_tuple_the_peer_holds_in_time_wait(lab, peer):
    """A program run again (a new stack each time) from the same source port to a server that
    closed first, whose side still holds the old connection in TIME-WAIT: the new SYN is taken at
    once, as a kernel client's is, because every stack of the machine numbers its connections
    and timestamps on one clock. (On clocks of their own, about half the attempts got an ACK
    instead, then our reset and a second's wait for the SYN to be sent again.)"""
    peer(PEER_PY, "greet", "9490")
    syn, rst = 0x02, 0x04
    for run in range(6):
        with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
            stack.capture_start(1 << 20)
            conn = stack.connect((lab.peer_ip, 9490), timeout=10, source_port=47000)
            line = b""
            while chunk := conn.recv(100):
                line += chunk
            assert line == b"hello\n"
            conn.close()
            deadline = time.monotonic() + 5
            while stack.connections() and time.monotonic() < deadline:
                time.sleep(0.01)  # our FIN acknowledged: the peer's side is in TIME-WAIT
            assert stack.connections() == []
            stack.capture_stop()
            sent = _tcp_flags_sent(stack.capture_pcap(), 47000)
            assert [f & syn for f in sent].count(syn) == 1, f"run {run}: one SYN ({sent})"
            assert not any(f & rst for f in sent), f"run {run}: no reset ({sent})"
