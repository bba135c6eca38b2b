"""The link under the stack: taken down and up again, or deleted and made again
under its name (a cable pulled, a USB adapter plugged back in). Connections keep
their state meanwhile; nothing spins."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import resource
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DEVICE, STACK_CIDR, Peer
from helpers import linux_lab
from peer import pattern

import mipfast
import mipfast.asyncio as mfa
from mipfast._lab import Lab

PEER_PY = str(Path(__file__).resolve().parent / "peer.py")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cpu_seconds() -> float:
    """CPU time of this process, every thread (the stack's driver among them)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_for(seconds: float) -> float:
    """The CPU time this process used while it waited `seconds`."""
    before = cpu_seconds()
    time.sleep(seconds)
    return cpu_seconds() - before


def peer_mac(stack: mipfast.Stack, ip: str) -> str | None:
    """The MAC the stack's ARP table holds for `ip`."""
    return next((e["mac"] for e in stack.arp_table() if e["ip"] == ip), None)


def lab_peer_mac(lab: Lab) -> str:
    """The MAC of the lab's peer interface, as the kernel has it."""
    out = lab.run("cat", f"/sys/class/net/{lab.peer}/address").stdout
    return out.strip()


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_link_taken_down_waits_without_spinning_and_carries_on(lab, peer, caplog):
    """Linux marks a packet socket with ENETDOWN when its link goes down, and
    poll() reports it ready until that error is taken: a stack that only reads
    its ring spun on it at 100% CPU, even after the link came back. The upload
    across the outage arrives whole."""
    caplog.set_level(logging.INFO, logger="mipfast")
    size = 2 << 20
    data = pattern(size)
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        sink = peer(PEER_PY, "sink", "9015")
        with stack.connect((lab.peer_ip, 9015), timeout=10) as conn:
            conn.sendall(data[: size // 2])
            subprocess.run(["ip", "link", "set", lab.iface, "down"], check=True)
            try:
                time.sleep(0.1)
                down = busy_for(1.0)
                link_while_down = stack.stats()["link"]
            finally:
                subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)
            conn.sendall(data[size // 2 :])
            after = busy_for(0.5)
            link_after = stack.stats()["link"]
        assert sink.result().split() == [str(size), sha(data)]
    assert down < 0.4, f"{down:.2f} CPU-seconds in 1 s with the link down: something spins"
    assert after < 0.3, f"{after:.2f} CPU-seconds in 0.5 s idle after the link came back"
    if DEVICE == "auto":
        assert (link_while_down, link_after) == ("down", "up")
        said = messages(caplog)
        assert any("the link is down" in m for m in said), said
        assert any("the link is up" in m for m in said), said


@linux_lab  # the pair is made again inside the lab's namespace
def test_an_interface_deleted_and_made_again_under_its_name():
    """The stack's interface is deleted mid-upload and a new one made under its
    name, its peer back in the namespace where the receiving process kept its
    socket. The stack binds to the new interface, asks for its neighbors again
    (the new peer has another MAC), and the upload arrives whole. libpcap's
    handle cannot be bound again: calls that run the device fail with its error."""
    tag = os.getpid() % 100000
    lab = Lab(
        netns=f"mft-link-{tag}",
        iface=f"mfl{tag}a",
        peer=f"mfl{tag}b",
        dhcp=False,
        offloads=DEVICE != "pcap",
    )
    size = 4 << 20
    data = pattern(size)
    with lab:
        sink = Peer(lab, PEER_PY, "sink", "9016")
        try:
            with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
                conn = stack.connect((lab.peer_ip, 9016), timeout=10)
                conn.sendall(data[: size // 2])
                subprocess.run(["ip", "link", "del", lab.iface], check=True)
                time.sleep(0.1)
                gone = busy_for(1.0)
                assert gone < 0.4, f"{gone:.2f} CPU-seconds in 1 s with the interface gone"
                assert stack.stats()["link"] == "gone"
                if DEVICE == "pcap":
                    with pytest.raises(OSError, match="disappeared"):
                        stack.ping(lab.peer_ip, count=1, timeout=1)
                    return
                lab.link_again()
                conn.sendall(data[size // 2 :])
                conn.close()
                # Well within the minute the old neighbor entry would have
                # stayed valid for, had it not been forgotten.
                assert sink.result(timeout=30).split() == [str(size), sha(data)]
                assert peer_mac(stack, lab.peer_ip) == lab_peer_mac(lab)
                assert stack.stats()["link"] == "up"
        finally:
            sink.stop()


@linux_lab  # the peer's MTU is set in the namespace
def test_an_mtu_lowered_under_an_upload_is_followed(lab, peer):
    """`ip link set … mtu 1000` on both ends mid-upload. Nothing on the wire says
    so: the veth drops what no longer fits, and a stack that kept cutting
    1448-byte segments stalled for good. The Linux path reads the interface's
    MTU when it looks at the link, and the stack follows it down (segments
    cut smaller, what was in flight sent again); its MTU goes back up with the
    interface's, never above the one configured."""
    size = 8 << 20
    data = pattern(size)
    ends = (["ip", "link", "set", lab.iface, "mtu"], ["ip", "-n", lab.netns, "link", "set", lab.peer, "mtu"])
    with mipfast.Stack(lab.iface, ip=STACK_CIDR, device="auto") as stack:
        sink = peer(PEER_PY, "sink", "9018")
        conn = stack.connect((lab.peer_ip, 9018), timeout=10)
        conn.sendall(data[: size // 2])
        try:
            for end in ends:
                subprocess.run([*end, "1000"], check=True)
            conn.sendall(data[size // 2 :])
            conn.close()
            # The MTU stays low until the upload is through.
            assert sink.result(timeout=30).split() == [str(size), sha(data)]
            lowered = stack.stats()["mtu"]
        finally:
            for end in ends:
                subprocess.run([*end, "1500"], check=True)
        assert lowered == 1000
        deadline = time.monotonic() + 5
        while stack.stats()["mtu"] != 1500 and time.monotonic() < deadline:
            stack.ping(lab.peer_ip, count=1, timeout=0.1)  # the link is looked at when idle
        assert stack.stats()["mtu"] == 1500


@linux_lab  # dnsmasq
def test_a_link_that_comes_up_late_or_flaps_has_its_lease_at_once(lab):
    """A stack started on a link that is down sends DISCOVERs nobody gets, and
    backs off (4 s, then 8 s). When the link comes up it discovers at once
    instead. Bound, a link that goes down and up again has its lease verified
    with the server (RFC 2131 INIT-REBOOT: a broadcast REQUEST with the address,
    which dnsmasq ACKs). libpcap opens no interface that is down."""
    subprocess.run(["ip", "link", "set", lab.iface, "down"], check=True)
    try:
        if DEVICE == "pcap":
            with pytest.raises(OSError, match="not up"):
                mipfast.Stack(lab.iface)  # libpcap opens no interface that is down
            return
        with mipfast.Stack(lab.iface) as stack:
            time.sleep(4.5)  # the second DISCOVER went out, and was lost
            down = busy_for(1.0)
            link_while_down = stack.stats()["link"]
            subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)
            up_at = time.monotonic()
            stack.wait_ready(timeout=20)
            took = time.monotonic() - up_at
            assert down < 0.4, f"{down:.2f} CPU-seconds in 1 s with the link down"
            assert link_while_down == "down"
            assert took < 3, f"READY {took:.1f} s after the link came up: discovery waited for its backoff"
            acks = lab.log_file.read_text(errors="replace").count("DHCPACK")
            subprocess.run(["ip", "link", "set", lab.iface, "down"], check=True)
            time.sleep(0.3)
            subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if lab.log_file.read_text(errors="replace").count("DHCPACK") > acks:
                    break
                time.sleep(0.05)
            assert lab.log_file.read_text(errors="replace").count("DHCPACK") > acks, "lease verified"
            assert stack.stats()["dhcp"] == "bound"
    finally:
        subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)


@linux_lab  # ip tuntap
@pytest.mark.parametrize("device", ["auto", "pcap"])
def test_a_tun_device_is_refused_as_no_ethernet(device):
    """`-i tun0` or `-i wg0` (a VPN's interface, an easy pick) carries IP without
    Ethernet: the stack says so instead of waiting for ARP replies forever."""
    name = f"mftun{os.getpid() % 100000}"
    subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tun"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        with pytest.raises(ValueError, match=f"{name} is not an Ethernet interface"):
            mipfast.Stack(name, ip="10.99.0.2/24", device=device)
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def test_an_event_loop_does_not_spin_while_the_link_is_down(lab, peer):
    """An asyncio loop watches the device's descriptor itself (`add_reader`): it
    too woke for the socket's error without end while the link was down."""
    data = pattern(2 << 20)
    busy: list[float] = []

    async def upload(stack: mipfast.Stack) -> None:
        reader, writer = await mfa.open_connection(stack, lab.peer_ip, 9020)
        writer.write(data[: 1 << 20])
        await writer.drain()
        subprocess.run(["ip", "link", "set", lab.iface, "down"], check=True)
        try:
            await asyncio.sleep(0.1)
            before = cpu_seconds()
            await asyncio.sleep(1.0)
            busy.append(cpu_seconds() - before)
        finally:
            subprocess.run(["ip", "link", "set", lab.iface, "up"], check=True)
        writer.write(data[1 << 20 :])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as stack:
        sink = peer(PEER_PY, "sink", "9020")
        asyncio.run(upload(stack))
        assert sink.result().split() == [str(len(data)), sha(data)]
    assert busy[0] < 0.4, f"{busy[0]:.2f} CPU-seconds in 1 s with the link down: the loop spins"
