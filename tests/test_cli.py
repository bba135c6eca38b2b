"""python -m mipfast: listing, errors, and the one-command --lab demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import linux_lab, stop

from mipfast._lab import HostVethLab, Lab


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mipfast", *args], capture_output=True, text=True, timeout=timeout
    )


def test_list_prints_interfaces():
    r = run_cli("--list")
    assert r.returncode == 0
    assert "lo" in r.stdout.split()


def test_bad_interface_lists_interfaces_without_traceback():
    r = run_cli("-i", "nope-if9")
    assert r.returncode != 0
    assert "nope-if9" in r.stderr and "lo" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "argv, split",
    [
        (
            ["-i", "x", "-m", "uvicorn", "--host", "0.0.0.0", "--ip", "1"],
            (["-i", "x"], "uvicorn", ["--host", "0.0.0.0", "--ip", "1"]),
        ),
        (
            ["-i", "x", "--ip", "10.0.0.2/24", "s.py", "--ip", "z"],
            (["-i", "x", "--ip", "10.0.0.2/24"], None, ["s.py", "--ip", "z"]),
        ),
        (["-ix", "-mhttp.server", "8000"], (["-ix"], "http.server", ["8000"])),
        (["--iface=x", "--dns", "d", "script.py"], (["--iface=x", "--dns", "d"], None, ["script.py"])),
    ],
)
def test_patch_cli_leaves_the_programs_own_options_to_it(argv, split):
    from mipfast.patch import _split

    assert _split(argv) == split


def test_a_passive_lookup_under_the_patch_answers_ipv4_first(monkeypatch):
    """A system that answers IPv6 first for the wildcard address (gai.conf) must not send
    http.server, which binds the first answer, to the kernel's IPv6."""
    import http.server
    import socket

    from mipfast.patch import patched

    def ipv6_first(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        # What glibc answers for the wildcard under a gai.conf that prefers IPv6; made
        # here, so that the test does not depend on this host's own configuration.
        assert host is None and flags & socket.AI_PASSIVE
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("0.0.0.0", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)
    passive = {"type": socket.SOCK_STREAM, "flags": socket.AI_PASSIVE}
    with patched(stack=None):
        family, address = http.server._get_best_family(None, 8000)
        everything = socket.getaddrinfo(None, 8000, **passive)
    assert (family, address) == (socket.AF_INET, ("0.0.0.0", 8000))
    assert {info[0] for info in everything} == {socket.AF_INET, socket.AF_INET6}, "the rest stay"


def test_patch_cli_asks_for_a_program_without_traceback():
    for args in (["-i", "lo"], ["-i", "lo", "-m"]):
        r = subprocess.run(
            [sys.executable, "-m", "mipfast.patch", *args], capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr


def test_bad_address_is_reported_without_traceback():
    r = run_cli("-i", "lo", "--ip", "10.1.2.3")
    assert r.returncode != 0 and "prefix" in r.stderr and "Traceback" not in r.stderr


class Output:
    """Collects a child's output on a thread, so that waiting never blocks on a pipe."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text):
                return self.text
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not seen; output:\n{self.text}")


def _run_lab_demo(lab: Lab, second: bool = False) -> None:
    """``python -m mipfast --lab`` comes up, answers ping from the namespace and leaves
    nothing behind; with ``second``, another one started meanwhile is refused and the
    first keeps answering."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mipfast", "--lab"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    try:
        out = output.wait_for(r"ip netns exec mipfast-lab ping (\S+)", 30)
        assert re.search(r"READY, IP: 10\.77\.0\.\d+ / GW: 10\.77\.0\.1 / Lease: \d+ sec", out), out
        ip = re.search(r"ip netns exec mipfast-lab ping (\S+)", out).group(1)
        r = lab.run("ping", "-c", "3", "-i", "0.05", "-W", "1", ip, check=False)
        assert " 3 received" in r.stdout, r.stdout
        if second:
            again = subprocess.run(
                [sys.executable, "-m", "mipfast", "--lab"], capture_output=True, text=True, timeout=60
            )
            assert again.returncode == 1, again.stdout + again.stderr
            assert f"the lab mipfast-lab is up already, in process {proc.pid}" in again.stderr, again.stderr
            r = lab.run("ping", "-c", "3", "-i", "0.05", "-W", "1", ip, check=False)
            assert " 3 received" in r.stdout, "the first lab was left alone: " + r.stdout
    finally:
        stop(proc, signal.SIGINT, 15, read=False)
        output.thread.join(5)
        rest = output.text
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest
    assert not lab.exists(), "the lab namespace was left behind"
    assert subprocess.run(["ip", "link", "show", lab.iface], capture_output=True).returncode != 0


@linux_lab  # the Linux demo lab (macOS's --lab: scripts/macos_smoke.sh)
def test_lab_demo_comes_up_and_cleans_up(lab):
    # `lab` (the test lab) proves root and netns; the demo uses its own fixed names.
    _run_lab_demo(Lab(), second=True)


@linux_lab
def test_lab_demo_cleans_up_after_a_crash(lab):
    # An earlier run killed with everything in place (its lock went with its process).
    made = "from mipfast._lab import Lab; Lab().up()"
    subprocess.run([sys.executable, "-c", made], check=True, timeout=60)
    assert Lab().exists()
    _run_lab_demo(Lab())


@linux_lab  # DHCP
@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_stack_cli_stops_cleanly_and_flushes_trace(lab, tmp_path, sig):
    trace = tmp_path / "cli.pcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mipfast", "-i", lab.iface, "--pcap-out", str(trace), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    try:
        output.wait_for(r"READY, IP: ", 15)
    finally:
        stop(proc, sig, 15, read=False)
        output.thread.join(5)
        rest = output.text
    assert proc.returncode == 0, rest
    r = subprocess.run(["tcpdump", "-r", str(trace), "-nn", "-v"], capture_output=True, text=True)
    assert "DHCP-Message (53), length 1: ACK" in r.stdout, r.stdout + r.stderr


@linux_lab  # a veth pair in macOS's shape (its feth pair: scripts/macos_smoke.sh)
def test_a_host_peer_lab_that_another_process_has_up_is_left_to_it(lab):
    """The host-peer labs (macOS's feth pair, Linux's ``MIPFAST_LAB=host``) are claimed as the
    namespace lab is: a second process is refused and its ``down()`` leaves the pair alone."""
    first = HostVethLab("mfclaim0a", "mfclaim0b")
    second = (
        "import sys\n"
        "from mipfast._lab import HostVethLab, LabError\n"
        "lab = HostVethLab('mfclaim0a', 'mfclaim0b')\n"
        "try:\n"
        "    lab.up()\n"
        "except LabError as e:\n"
        "    print(e)\n"
        "lab.down()\n"
    )
    with first:
        r = subprocess.run([sys.executable, "-c", second], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"the lab on mfclaim0a is up already, in process {os.getpid()}" in r.stdout, r.stdout
        shown = subprocess.run(["ip", "-br", "addr", "show", "mfclaim0b"], capture_output=True, text=True)
        assert first.peer_ip in shown.stdout, "the other process's down() removed the pair: " + shown.stderr
    assert subprocess.run(["ip", "link", "show", "mfclaim0a"], capture_output=True).returncode != 0
    with first:  # the claim went with the first up: the pair comes up again
        assert subprocess.run(["ip", "link", "show", "mfclaim0a"], capture_output=True).returncode == 0
