"""Rules shared by the tests."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Needs the Linux lab: its namespace and dnsmasq (DHCP, names), Linux tools on the peer
#: side (ethtool, tc, ss, ip), or programs the macOS job does not install (chromium,
#: mosquitto). Deselected with ``MIPFAST_LAB=host``, macOS's shape (see conftest.py).
linux_lab = pytest.mark.linux_lab


def ping_cmd(
    ip: str, count: int, interval: float | None = None, wait: float = 1, deadline: float | None = None
) -> list[str]:
    """A ``ping`` command line for this platform: ``wait`` seconds for each reply,
    ``deadline`` seconds in all (macOS's ping takes the wait in milliseconds and the
    deadline as ``-t``)."""
    darwin = sys.platform == "darwin"
    cmd = ["ping", "-c", str(count)]
    if interval is not None:
        cmd += ["-i", str(interval)]
    cmd += ["-W", str(int(wait * 1000)) if darwin else str(wait)]
    if deadline is not None:
        cmd += ["-t" if darwin else "-w", str(int(deadline))]
    return [*cmd, ip]


def wait_listening(lab, ip: str, port: int, timeout: float = 10) -> None:
    """Waits until a server on the peer side accepts connections at ``ip:port``
    (asked from the peer side, where the address is reachable)."""
    probe = (
        "import socket, sys, time\n"
        f"end = time.monotonic() + {timeout}\n"
        "while True:\n"
        "    try:\n"
        f"        socket.create_connection(('{ip}', {port}), 1).close(); break\n"
        "    except OSError:\n"
        "        if time.monotonic() > end: sys.exit('not listening')\n"
        "        time.sleep(0.05)\n"
    )
    r = lab.run(sys.executable, "-c", probe, check=False, timeout=timeout + 5)
    assert r.returncode == 0, f"nothing listens on {ip}:{port}: {r.stderr}"


def open_fds() -> int:
    """Descriptors this process has open."""
    return len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine that lacks something; under CI=true,
    where .ci/run installs everything, a missing piece is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextmanager
def peer_checksum_offload_off(lab) -> Iterator[None]:
    """The kernel side's TX checksum offload (and so TSO) off for a while, as
    the libpcap path needs; restored after if the lab runs with offloads."""
    subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", "off"), check=True, capture_output=True)
    try:
        yield
    finally:
        if lab.offloads:
            subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", "on"), check=True, capture_output=True)


def stop(proc: subprocess.Popen, sig: int, timeout: float, *, read: bool = True) -> tuple[str, str]:
    """Sends ``sig`` to ``proc`` and waits for it to end; returns what it wrote
    (``communicate``'s pair), or nothing with ``read=False`` (a thread of the test reads
    its output). One that does not end within ``timeout`` is killed before the
    ``TimeoutExpired`` goes on: a program left running (a stack on the lab's interface,
    with the lab's address) would answer in the next tests' place."""
    proc.send_signal(sig)
    try:
        if read:
            return proc.communicate(timeout=timeout)
        proc.wait(timeout=timeout)
        return "", ""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def ipv6_address(prefix: str, mac: str) -> str:
    """A /64 ``prefix`` and the modified EUI-64 identifier of ``mac`` (RFC 4291 appendix A)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 2, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return str(ipaddress.IPv6Address(ipaddress.IPv6Address(prefix).packed[:8] + iid))


def link_local(mac: str) -> str:
    return ipv6_address("fe80::", mac)


@contextmanager
def peer_ipv6(lab) -> Iterator[dict[str, str]]:
    """IPv6 on the peer's end for the test (the lab keeps it off, so that other tests
    see no IPv6 chatter); off again after, which removes its addresses."""
    if not os.path.exists("/proc/sys/net/ipv6"):
        # A kernel booted with ipv6.disable=1 (or built without it): the peer
        # cannot speak IPv6. A skip on a developer's machine; under CI=true a
        # failure, as any missing part of the lab is.
        skip_or_fail("this kernel has no IPv6 for the peer (ipv6.disable=1?)")
    knob = f"net.ipv6.conf.{lab.peer}.disable_ipv6"
    lab.run("sysctl", "-qw", f"{knob}=0")
    try:
        mac = json.loads(lab.run("ip", "-j", "link", "show", "dev", lab.peer).stdout)[0]["address"]
        ll = link_local(mac)
        yield {"mac": mac, "link_local": ll}
    finally:
        lab.run("sysctl", "-qw", f"{knob}=1", check=False)


def wait_peer_address(lab, address: str, timeout: float = 5.0) -> None:
    """Until the peer's kernel has finished its own duplicate address detection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = json.loads(lab.run("ip", "-6", "-j", "addr", "show", "dev", lab.peer).stdout)
        addrs = [a for i in info for a in i.get("addr_info", []) if a.get("local") == address]
        if addrs and not addrs[0].get("tentative"):
            return
        time.sleep(0.1)
    pytest.fail(f"the peer never got {address}")
