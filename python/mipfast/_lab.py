"""The lab: a veth pair whose peer end lives in a network namespace with
10.77.0.1/24 and a DHCP/DNS server (dnsmasq), so that the stack meets the
Linux kernel on one machine. Needs root (or CAP_NET_ADMIN), iproute2,
dnsmasq and ethtool.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ._native import FileClaim

PEER_IP = "10.77.0.1"
PREFIX = "10.77.0"
#: With ``host_access``: the host's end of a second link into the namespace, which routes.
HOST_LINK = ("mipfast-host", "mipfast-hostp", "10.77.1.2", "10.77.1.1")
RUN_DIR = Path(os.environ.get("MIPFAST_RUN_DIR", "/run" if os.access("/run", os.W_OK) else "/tmp"))


class LabError(RuntimeError):
    """The lab could not be set up (missing tool, no privileges)."""


class PeerCommandFailed(subprocess.CalledProcessError):
    """A command run on the peer side failed; its message ends with what it printed on stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()} Its stderr: {(self.stderr or '').strip()[-2000:]!r}"


def _run_peer_command(args: list[str], check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise PeerCommandFailed(result.returncode, args, result.stdout, result.stderr)
    return result


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def missing_tools() -> list[str]:
    """The programs the lab needs that are not installed."""
    return [t for t in ("ip", "dnsmasq", "ethtool") if shutil.which(t) is None]


class _Claimed:
    """A lab's claim while an object has it up: a ``FileClaim`` (a lock on a file in
    ``RUN_DIR`` that goes with its holder, a crash included), so that a second process
    does not tear down or rebuild the lab a running one uses."""

    _lock: FileClaim | None = None

    def _claim_name(self) -> str:
        raise NotImplementedError

    def _claim(self) -> int | str | None:
        """Takes the claim: None once held; else who holds it."""
        if self._lock is None:
            claim = FileClaim(RUN_DIR / f"mipfast-{self._claim_name()}.lab.lock")
            if claim.taken:
                return claim.holder or "unknown"
            self._lock = claim
        return None

    def _let_go(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class Lab(_Claimed):
    """A veth pair ``iface`` ↔ ``peer``; ``peer`` sits in namespace ``netns``
    with ``10.77.0.1/24`` and dnsmasq (DHCP range .100–.199, DNS on .1).

    Setting up first removes anything left from an earlier run with the same
    names, so a crash is cleaned up by the next start. ``offloads=False``
    turns the peer's TX checksum offload (and with it TSO) off, for the
    libpcap device path.
    """

    def __init__(
        self,
        netns: str = "mipfast-lab",
        iface: str = "mip0",
        peer: str = "mip0-peer",
        dhcp: bool = True,
        hosts: dict[str, str] | None = None,
        lease: str = "12h",
        host_access: bool = False,
        offloads: bool = True,
        ipv6: bool = False,
    ) -> None:
        for name in (iface, peer):
            if len(name) > 15:
                raise ValueError(f"interface name {name!r} is longer than 15 characters")
        self.netns = netns
        self.iface = iface
        self.peer = peer
        self.peer_ip = PEER_IP
        self.dhcp = dhcp
        self.hosts = dict(hosts or {"lab.mipfast": PEER_IP})
        self.lease = lease
        self.host_access = host_access
        self.offloads = offloads
        self.ipv6 = ipv6
        self.pid_file = RUN_DIR / f"mipfast-{netns}.dnsmasq.pid"
        self.lease_file = RUN_DIR / f"mipfast-{netns}.leases"
        self.log_file = RUN_DIR / f"mipfast-{netns}.dnsmasq.log"
        self._dnsmasq: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def ns(self, *args: str) -> list[str]:
        """A command line that runs ``args`` inside the lab's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs a command in the namespace and returns its result."""
        return _run_peer_command(self.ns(*args), check, timeout)

    def up(self) -> None:
        missing = missing_tools()
        if missing:
            raise LabError(
                f"the lab needs {', '.join(missing)}: apt-get install iproute2 dnsmasq-base ethtool"
            )
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it creates a network namespace and a veth pair)")
        holder = self._claim()
        if holder is not None:
            raise LabError(
                f"the lab {self.netns} is up already, in process {holder}: stop that one first (Ctrl-C), "
                "or run the stack on an interface of your own (-i IFACE)"
            )
        self._remove()
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.link_again()
        if self.host_access:
            self._link_host()
        if self.dhcp:
            self._start_dnsmasq()

    def link_again(self) -> None:
        """Makes the veth pair, again after ``ip link del`` (a NIC unplugged and
        plugged back in): the same names, new interfaces. What runs in the
        namespace stays."""
        _run(["ip", "link", "add", self.iface, "type", "veth", "peer", "name", self.peer])
        _run(["ip", "link", "set", self.peer, "netns", self.netns])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.peer_ip}/24", "dev", self.peer])
        # Unless asked for IPv6, the peer sends no IPv6 chatter (MLD reports, router
        # solicitations) at the stack, whose tests count every frame that arrives; the
        # IPv6 tests turn it on for themselves. The stack's end never runs the host's IPv6.
        peer_v6_off = "0" if self.ipv6 else "1"
        _run(self.ns("sysctl", "-qw", f"net.ipv6.conf.{self.peer}.disable_ipv6={peer_v6_off}"), check=False)
        _run(["ip", "-n", self.netns, "link", "set", self.peer, "up"])
        _run(["sysctl", "-qw", f"net.ipv6.conf.{self.iface}.disable_ipv6=1"], check=False)
        _run(["ip", "link", "set", self.iface, "up"])
        if not self.offloads:
            # For the libpcap path: with TX checksum offload (and so TSO) on,
            # the kernel's segments reach libpcap with partial checksums, and
            # libpcap cannot say so. The Linux path reads the kernel's
            # virtio-net header with each frame and needs nothing of this.
            _run(self.ns("ethtool", "-K", self.peer, "tx", "off"), check=False)

    def _link_host(self) -> None:
        """A second veth pair from this host into the namespace, which forwards between
        its two links: the host reaches the stack (a browser on the dashboard) through the
        namespace, the stack's default gateway, as a LAN host reaches a device via a router."""
        host, peer, host_ip, peer_ip = HOST_LINK
        _run(["ip", "link", "del", host], check=False)
        _run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", self.netns])
        _run(["ip", "-n", self.netns, "addr", "add", f"{peer_ip}/24", "dev", peer])
        _run(["ip", "-n", self.netns, "link", "set", peer, "up"])
        _run(self.ns("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        _run(["ip", "addr", "add", f"{host_ip}/24", "dev", host])
        _run(["ip", "link", "set", host, "up"])
        _run(["ip", "route", "replace", f"{PREFIX}.0/24", "via", peer_ip, "dev", host])

    def _start_dnsmasq(self) -> None:
        args = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--no-resolv",
            "--bind-interfaces",
            f"--interface={self.peer}",
            f"--listen-address={self.peer_ip}",
            f"--dhcp-range={PREFIX}.100,{PREFIX}.199,255.255.255.0,{self.lease}",
            f"--dhcp-option=option:router,{self.peer_ip}",
            f"--dhcp-option=option:dns-server,{self.peer_ip}",
            "--dhcp-authoritative",
            "--no-ping",
            f"--dhcp-leasefile={self.lease_file}",
            f"--pid-file={self.pid_file}",
            "--user=root",
            "--log-dhcp",
            "--log-facility=-",
        ]
        args += [f"--address=/{name}/{ip}" for name, ip in self.hosts.items()]
        # Unknown names in the lab domain get NXDOMAIN, not REFUSED (there is no upstream).
        args += ["--address=/mipfast/"]
        with open(self.log_file, "wb") as log:
            self._dnsmasq = subprocess.Popen(
                self.ns(*args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        # Wait until it listens, so that the first DISCOVER is not lost.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._dnsmasq.poll() is not None:
                raise LabError(f"dnsmasq exited: {self.log_file.read_text(errors='replace')[-2000:]}")
            ss = _run(self.ns("ss", "-lun"), check=False).stdout
            if ":67 " in ss:
                return
            time.sleep(0.02)
        raise LabError("dnsmasq did not start listening on port 67 within 5 s")

    def down(self) -> None:
        """Removes the namespace, the veth pair and dnsmasq; quiet if they are gone.
        A lab that another process has up is left to it."""
        if self._claim() is not None:
            return
        self._remove()
        self._let_go()

    def _claim_name(self) -> str:
        return self.netns

    def _remove(self) -> None:
        if self._dnsmasq is not None:
            self._dnsmasq.terminate()
            try:
                self._dnsmasq.wait(3)
            except subprocess.TimeoutExpired:
                self._dnsmasq.kill()
            self._dnsmasq = None
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        _run(["ip", "netns", "del", self.netns], check=False)
        _run(["ip", "link", "del", self.iface], check=False)
        if self.host_access:
            _run(["ip", "link", "del", HOST_LINK[0]], check=False)
        for f in (self.pid_file, self.lease_file):
            with contextlib.suppress(OSError):
                f.unlink()

    def describe(self, ip: str, port: int) -> str:
        """What `python -m mipfast --lab` prints once the stack is up."""
        return (
            f"mipfast is up on {self.iface} with {ip}. Reach it from the lab namespace, or from this\n"
            "host through it (the namespace routes):\n"
            f"  sudo ip netns exec {self.netns} ping {ip}\n"
            f"  curl http://{ip}:{port}/    # or open it in a browser here\n"
            + (
                f"  sudo ip netns exec {self.netns} curl -g http://[ADDR%{self.peer}]:{port}/ # ADDR: below\n"
                if self.ipv6
                else ""
            )
            + "Ctrl-C stops the stack and removes the lab."
        )

    def exists(self) -> bool:
        names = _run(["ip", "netns", "list"], check=False).stdout.split()
        return self.netns in names


class _HostPeerLab(_Claimed):
    """A lab whose kernel side is this host itself (no namespace): commands for the
    peer side run as they are. macOS's shape (it has no network namespaces). Claimed
    by the stack's interface name, as ``Lab`` is by its namespace."""

    netns: str | None = None
    offloads = True
    stack_cidr = f"{PREFIX}.2/24"

    def __init__(self, iface: str, peer: str) -> None:
        self.iface = iface
        self.peer = peer
        self.peer_ip = PEER_IP

    def __enter__(self) -> _HostPeerLab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _claim_name(self) -> str:
        return self.iface

    def up(self) -> None:
        """Creates the pair, first removing one left by a crash; a pair another process
        has up is refused (LabError), not rebuilt under it."""
        self._check_can_create()
        holder = self._claim()
        if holder is not None:
            raise LabError(
                f"the lab on {self.iface} is up already, in process {holder}: stop that one first "
                "(Ctrl-C), or run the stack on an interface of your own (-i IFACE)"
            )
        try:
            self._destroy()
            self._create()
        except BaseException:
            self._destroy()
            self._let_go()
            raise

    def down(self) -> None:
        """Removes the pair; quiet if it is gone. A pair another process has up is left to it."""
        if self._claim() is not None:
            return
        self._destroy()
        self._let_go()

    def _check_can_create(self) -> None:
        """Raises LabError if this host lacks what the pair needs (tools, root)."""
        raise NotImplementedError

    def _create(self) -> None:
        raise NotImplementedError

    def _destroy(self) -> None:
        raise NotImplementedError

    def ns(self, *args: str) -> list[str]:
        """The command line for the peer side: ``args`` as they are (this host is the peer)."""
        return list(args)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs a command on the peer side (this host) and returns its result."""
        return _run_peer_command(list(args), check, timeout)

    def describe(self, ip: str, port: int) -> str:
        return (
            f"mipfast is up on {self.iface} with {ip}; this host reaches it through {self.peer}:\n"
            f"  ping {ip}\n"
            f"  curl http://{ip}:{port}/    # or open it in a browser here\n"
            "Ctrl-C stops the stack and removes the pair."
        )


class FethLab(_HostPeerLab):
    """macOS: a feth pair (fake Ethernet, the seed's first setup): ``feth0`` is the
    stack's, ``feth1`` the host kernel's with 10.77.0.1/24. Addressing is static (macOS
    ships no DHCP server one can start for a single interface): the stack takes
    10.77.0.2/24. Needs root (``ifconfig ... create``)."""

    def __init__(self, iface: str = "feth0", peer: str = "feth1") -> None:
        super().__init__(iface, peer)

    def _check_can_create(self) -> None:
        if shutil.which("ifconfig") is None:
            raise LabError("the macOS lab needs ifconfig")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it creates a feth pair): sudo python -m mipfast --lab")

    def _create(self) -> None:
        _run(["ifconfig", self.iface, "create"])
        _run(["ifconfig", self.peer, "create"])
        _run(["ifconfig", self.iface, "peer", self.peer])
        _run(["ifconfig", self.peer, "inet", f"{self.peer_ip}/24", "up"])
        _run(["ifconfig", self.iface, "up"])

    def _destroy(self) -> None:
        for name in (self.iface, self.peer):
            _run(["ifconfig", name, "destroy"], check=False)


class HostVethLab(_HostPeerLab):
    """Linux, in macOS's shape: a veth pair whose peer end stays in this host's own
    namespace with 10.77.0.1/24, static addressing, no dnsmasq. The test suite runs
    on it (``MIPFAST_LAB=host``) as it runs on macOS's feth pair, so that the tests
    macOS runs are known not to lean on a namespace. ``offloads=False`` turns the peer's
    TX checksum offload off, for the libpcap device path."""

    def __init__(self, iface: str, peer: str, offloads: bool = True) -> None:
        super().__init__(iface, peer)
        self.offloads = offloads

    def _check_can_create(self) -> None:
        missing = [t for t in ("ip", "ethtool") if shutil.which(t) is None]
        if missing:
            raise LabError(f"the host lab needs {', '.join(missing)}")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it creates a veth pair)")

    def _create(self) -> None:
        _run(["ip", "link", "add", self.iface, "type", "veth", "peer", "name", self.peer])
        for name in (self.iface, self.peer):
            _run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=False)
        _run(["ip", "addr", "add", f"{self.peer_ip}/24", "dev", self.peer])
        _run(["ip", "link", "set", self.peer, "up"])
        _run(["ip", "link", "set", self.iface, "up"])
        if not self.offloads:
            _run(["ethtool", "-K", self.peer, "tx", "off"], check=False)

    def _destroy(self) -> None:
        _run(["ip", "link", "del", self.iface], check=False)
