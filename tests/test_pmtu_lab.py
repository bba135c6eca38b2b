"""Path MTU discovery against a Linux router: the lab namespace forwards to a
second namespace over a link with MTU 1000 and drops what would need
fragmenting (as routers that do not fragment do), so only DF segments and the
router's ICMP "fragmentation needed" let a transfer through."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import PEER_PY
from helpers import linux_lab, skip_or_fail
from peer import pattern

import mipfast

pytestmark = linux_lab  # a router namespace behind the lab's

STACK_CIDR = "10.77.0.52/24"
FAR_IP = "10.78.0.2"
ROUTER_FAR_IP = "10.78.0.1"
HOP_MTU = 1000
PORT = 9052


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def far(lab):
    """A namespace behind the lab namespace, a 1000-byte hop on the way."""
    if shutil.which("iptables") is None:
        skip_or_fail("iptables is not installed (scripts/setup.sh installs it)")
    tag = os.getpid() % 100000
    ns, inner, outer = f"mipfast-far-{tag}", f"mfr{tag}a", f"mfr{tag}b"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", lab.netns, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
        sh("ip", "-n", lab.netns, "link", "set", outer, "mtu", str(HOP_MTU), "up")
        sh("ip", "-n", lab.netns, "addr", "add", f"{ROUTER_FAR_IP}/24", "dev", outer)
        # The far host itself has a 1500-byte MTU (and announces MSS 1460):
        # only the router's hop is small, as on a path through a tunnel.
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{FAR_IP}/24", "dev", inner)
        sh("ip", "-n", ns, "route", "add", "default", "via", ROUTER_FAR_IP)
        sh("ip", "netns", "exec", lab.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Packets too big for the hop and without DF would be fragmented after
        # this hook: dropped instead. DF ones too big never reach it: the
        # router answers them with ICMP fragmentation needed. (DF ones that do
        # are TSO bursts over veth, of segments that fit: they pass.)
        not_df = ["-m", "u32", "--u32", "4&0x4000=0"]
        too_big = ["-m", "length", "--length", f"{HOP_MTU + 1}:65535"]
        drop = ["FORWARD", "-o", outer, *not_df, *too_big, "-j", "DROP"]
        sh("ip", "netns", "exec", lab.netns, "iptables", "-A", *drop)
        yield ns
    finally:
        in_lab = ["ip", "netns", "exec", lab.netns]
        for undo in (
            [*in_lab, "iptables", "-F", "FORWARD"],
            [*in_lab, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
            ["ip", "-n", lab.netns, "link", "del", outer],
            ["ip", "netns", "del", ns],
        ):
            subprocess.run(undo, capture_output=True)


@pytest.mark.parametrize("offload", [True, False], ids=["bursts", "frame-by-frame"])
def test_upload_through_a_smaller_hop_finds_the_path_mtu(lab, far, offload):
    sink = subprocess.Popen(
        ["ip", "netns", "exec", far, sys.executable, PEER_PY, "sink", str(PORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in sink.stdout.readline()
        data = pattern(4 << 20)
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, gateway=lab.peer_ip, segment_offload=offload) as stack:
            with stack.connect((FAR_IP, PORT), timeout=10) as conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1448
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                out, err = sink.communicate(timeout=60)
                # 1000 − 20 (IPv4) − 20 (TCP) − 12 (timestamps).
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == HOP_MTU - 52
            assert out.split() == [str(len(data)), hashlib.sha256(data).hexdigest()], err
            assert stack.counters["drop_icmp_frag_needed_ignored"] == 0
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()
