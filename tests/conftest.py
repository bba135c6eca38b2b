"""The lab fixture: a veth pair + network namespace with dnsmasq and the Linux
kernel as the peer. Without root or netns the lab tests skip, except under
CI=true, where a missing lab is a failure.

``MIPFAST_LAB=host`` (the default on macOS) runs the suite in macOS's shape: the
peer is this host itself, over a feth pair on macOS or a veth pair without a
namespace on Linux, addressed statically. Tests marked ``linux_lab`` need what only
the Linux lab has (its namespace, dnsmasq, ethtool/tc on the peer, a browser or broker
in it) and are deselected there."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import skip_or_fail

import mipfast
from mipfast._lab import FethLab, HostVethLab, Lab, LabError, missing_tools

PEER_PY = str(Path(__file__).resolve().parent / "peer.py")
"""The kernel-side helper program (run in the namespace with sys.executable)."""


#: "netns" (Linux's lab) or "host" (the peer is this host: macOS's shape).
LAB_KIND = os.environ.get("MIPFAST_LAB", "host" if sys.platform == "darwin" else "netns")


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a shell without job control (a CI runner's
    # script, `cmd &` in a script) inherits SIGINT ignored, and so would every program a
    # test starts: Ctrl-C tests would then fail, and a test's server that a SIGINT does
    # not stop would outlive it. Python's own handler here gives its children SIGINT's
    # default back (a handler is not inherited across exec, an ignored signal is).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "linux_lab: needs the Linux lab (namespace, dnsmasq, Linux tools on the peer side)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In macOS's shape the tests that need the Linux lab are not collected (they are
    deselected, not skipped: the Linux pass of the same CI runs them), so that under
    CI=true nothing in a lab run skips."""
    if LAB_KIND != "host":
        return
    linux_only = [item for item in items if item.get_closest_marker("linux_lab")]
    if linux_only:
        config.hook.pytest_deselected(items=linux_only)
        items[:] = [item for item in items if not item.get_closest_marker("linux_lab")]


def _lab_problem() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    if LAB_KIND == "host":
        return None  # the host lab says what it lacks when it comes up
    missing = missing_tools()
    if missing:
        return f"the lab needs {', '.join(missing)}"
    probe = f"mftprobe{os.getpid() % 10000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def lab():
    problem = _lab_problem()
    if problem:
        skip_or_fail(problem)
    lab = _make_lab(os.getpid() % 100000)
    try:
        lab.up()
    except LabError as e:
        lab.down()
        skip_or_fail(str(e))
    yield lab
    lab.down()


def _make_lab(tag: int) -> Lab | FethLab | HostVethLab:
    if LAB_KIND == "host":
        if sys.platform == "darwin":
            return FethLab()
        return HostVethLab(f"mft{tag}a", f"mft{tag}b", offloads=DEVICE != "pcap")
    # peer.test: the name the test CA's certificate for the kernel side carries.
    # six.mipfast: an IPv6 address only (AAAA lookups).
    hosts = {"lab.mipfast": "10.77.0.1", "peer.test": "10.77.0.1", "six.mipfast": "fd77:0:0:1::1"}
    # The kernel side keeps its default offloads (TSO, checksum offload), as
    # a user's would; only libpcap's path needs them off (see Lab).
    return Lab(
        netns=f"mipfast-test-{tag}",
        iface=f"mft{tag}a",
        peer=f"mft{tag}b",
        hosts=hosts,
        offloads=DEVICE != "pcap",
    )


@pytest.fixture(autouse=True)
def _mipfast_logging():
    logging.getLogger("mipfast").setLevel(logging.DEBUG)
    mipfast.reset_logging()
    yield


class Peer:
    """A kernel-side process in the lab namespace; waits for its "listening" line."""

    def __init__(self, lab, *args: str, ready: str | None = "listening") -> None:
        self.proc = subprocess.Popen(
            lab.ns(sys.executable, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        if ready:
            line = self.proc.stdout.readline()
            assert ready in line, f"peer did not start: {line!r} {self.proc.stderr.read()}"

    def result(self, timeout: float = 120) -> str:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def peer(lab):
    started: list[Peer] = []

    def start(*args: str, ready: str | None = "listening") -> Peer:
        p = Peer(lab, *args, ready=ready)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


STACK_IP = "10.77.0.2"
#: The device path under test: MIPFAST_DEVICE=pcap runs the suite over libpcap alone (macOS's path).
DEVICE = os.environ.get("MIPFAST_DEVICE", "auto")
STACK_CIDR = f"{STACK_IP}/24"


@pytest.fixture
def stack(lab):
    """A stack with a static address and its driver thread running."""
    with mipfast.Stack(lab.iface, ip=STACK_CIDR) as s:
        yield s


@pytest.fixture(scope="session", autouse=True)
def _enough_descriptors():
    # A thousand connections with readiness descriptors need more than the default 1024.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (65536, 10240):  # macOS refuses more than kern.maxfilesperproc
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want)), hard))
            break
        except (ValueError, OSError):
            continue
    yield


class Certificates:
    """A test CA (made by trustme for this run) and certificates it issued, as files
    that the kernel side in the namespace can read too."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        self.ca_file = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.files: dict[str, tuple[str, str]] = {}
        for name in ("peer.test", "stack.test"):
            cert = self.ca.issue_cert(name)
            chain = directory / f"{name}.pem"
            key = directory / f"{name}.key"
            chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
            cert.private_key_pem.write_to_path(str(key))
            self.files[name] = (str(chain), str(key))

    def client_context(self):
        import ssl

        return ssl.create_default_context(cafile=self.ca_file)

    def server_context(self, name: str = "stack.test"):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.files[name])
        return ctx


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("certs"))
