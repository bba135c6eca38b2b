"""TCP bulk throughput through the stack, beside the kernel, in one run:

* stack → kernel: Python `sendall` on a mipfast Connection, kernel sink in the lab namespace;
  with the kernel's segmentation offload cutting our TCP bursts (the default), and frame by frame.
* kernel → stack: kernel source in the lab namespace, Python `recv_into` on the Connection.
* kernel → kernel: the same Python sink/source on kernel sockets over an identical veth pair
  between two namespaces, offloads off (tso gso gro tx rx), MTU 1500.

With `--ipv6` every transfer runs over IPv6 instead: the stack to the peer's link-local address,
the kernel pair between two fd78::/64 addresses.

Each is measured with every offload off on both sides, and with the kernel's defaults. The
kernel's senders use CUBIC, Linux's own default (`--congestion`); if this machine's default
differs (some images set BBR), the offloads-on comparison is made with it too: BBR paces the
kernel's sender, and with it the reference moves a fifth of what CUBIC moves here.

Then: how many concurrent connections from the kernel the stack holds, and the
memory per idle connection (the stack's own accounting of connection blocks,
tables and buffers, and the process RSS growth).

Run as root: `sudo .venv/bin/python bench/tcp_bulk.py`. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import mipfast
from mipfast._lab import Lab

# Both listen on the wildcard address of the family `sys.argv[-1]` names ("0.0.0.0" or "::").
SINK = """
import socket, sys, time
any = sys.argv[-1]
s = socket.socket(socket.AF_INET6 if ":" in any else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((any, int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0; t = None
while True:
    k = c.recv_into(buf)
    if t is None: t = time.perf_counter()
    if not k: break
    n += k
print(n, time.perf_counter() - t, flush=True)
"""

SOURCE = """
import socket, sys, time
any = sys.argv[-1]
s = socket.socket(socket.AF_INET6 if ":" in any else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# On the listener: a connection then starts on it (switched later, it would keep BBR's pacing).
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, sys.argv[3].encode())
s.bind((any, int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); block = bytes(1 << 20); left = int(sys.argv[2])
while left > 0:
    n = min(left, len(block)); c.sendall(memoryview(block)[:n]); left -= n
c.close()
"""

# The reference's setting: no segmentation or checksum offloads, so both sides move 1500-byte frames.
OFFLOADS_OFF = ("tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off")

CLIENTS = """
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for i in range(n):
    try:
        conns.append(socket.create_connection((host, port), timeout=10))
    except OSError as e:
        print("failed after", len(conns), e, flush=True); break
print("connected", len(conns), flush=True)
sys.stdin.readline()
"""


def ns_python(netns: str, script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stdin=stdin,
        text=True,
    )
    return p


def gbit(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / 1e9


class KernelPair:
    """Two namespaces joined by a veth pair: the kernel reference, offloads off or at their defaults.

    Made once for all rounds: deleting a namespace goes on in the background for a while,
    and would slow whatever is measured next."""

    def __init__(self, offloads: bool = False, tag: str = "", ipv6: bool = False) -> None:
        self.offloads = offloads
        self.ipv6 = ipv6
        self.A, self.B = f"mipfast-bench-a{tag}", f"mipfast-bench-b{tag}"
        self.devices = (f"mfbench{tag}0", f"mfbench{tag}1")
        self.net = f"10.{78 + bool(tag)}.0"
        self.net6 = f"fd78:{int(bool(tag))}::"

    def __enter__(self) -> KernelPair:
        self._delete()
        for ns in (self.A, self.B):
            self._run("ip", "netns", "add", ns)
        a, b = self.devices
        self._run(
            "ip", "link", "add", a, "netns", self.A, "type", "veth", "peer", "name", b, "netns", self.B,
        )  # fmt: skip
        for ns, dev, i in ((self.A, a, 1), (self.B, b, 2)):
            self._run("ip", "-n", ns, "addr", "add", f"{self.net}.{i}/24", "dev", dev)
            if self.ipv6:
                self._run("ip", "-n", ns, "addr", "add", f"{self.net6}{i}/64", "dev", dev, "nodad")
            self._run("ip", "-n", ns, "link", "set", dev, "up")
            if not self.offloads:
                self._run("ip", "netns", "exec", ns, "ethtool", "-K", dev, *OFFLOADS_OFF)
        return self

    def __exit__(self, *exc: object) -> None:
        self._delete()

    def _delete(self) -> None:
        for ns in (self.A, self.B):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    @staticmethod
    def _run(*cmd: str) -> None:
        subprocess.run(list(cmd), check=True, capture_output=True)

    def transfer(self, size: int, congestion: str) -> float:
        """Python sink/source on kernel sockets across the pair, the sender on `congestion`."""
        sink = ns_python(self.B, SINK, "9100", "::" if self.ipv6 else "0.0.0.0")
        sink.stdout.readline()
        family, peer = ("AF_INET6", f"{self.net6}2") if self.ipv6 else ("AF_INET", f"{self.net}.2")
        subprocess.run(
            [
                "ip", "netns", "exec", self.A, sys.executable, "-c",
                f"import socket,sys; c=socket.socket(socket.{family})\n"
                f"c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b'{congestion}')\n"
                f"c.connect(('{peer}',9100)); b=bytes(1<<20)\n"
                f"for _ in range({size >> 20}): c.sendall(b)\nc.close()",
            ],
            check=True,
        )  # fmt: skip
        n, secs = sink.stdout.readline().split()
        sink.wait()
        return gbit(int(n), float(secs))


def peer_address(stack: mipfast.Stack, lab: Lab, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """Where the stack reaches the lab's peer: its IPv4 address, or with IPv6 on the lab its
    link-local address (once the stack has its own)."""
    if not lab.ipv6:
        return (lab.peer_ip, port)
    deadline = time.monotonic() + 5
    while not stack.ipv6_addresses and time.monotonic() < deadline:
        time.sleep(0.05)
    return (peer_link_local(lab), port, 0, 0)


def peer_link_local(lab: Lab) -> str:
    """The peer's link-local address, once its duplicate address detection is over."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = lab.run("ip", "-6", "-j", "addr", "show", "dev", lab.peer, "scope", "link").stdout
        addresses = [a for i in json.loads(out) for a in i.get("addr_info", [])]
        ready = [a["local"] for a in addresses if not a.get("tentative")]
        if ready:
            return ready[0]
        time.sleep(0.1)
    raise RuntimeError(f"{lab.peer} has no link-local address")


def wildcard(lab: Lab) -> str:
    return "::" if lab.ipv6 else "0.0.0.0"


def stack_to_kernel(stack: mipfast.Stack, lab: Lab, size: int) -> float:
    sink = ns_python(lab.netns, SINK, "9101", wildcard(lab))
    sink.stdout.readline()
    block = bytes(1 << 20)
    with stack.connect(peer_address(stack, lab, 9101), timeout=10) as conn:
        conn.settimeout(None)
        for _ in range(size >> 20):
            conn.sendall(block)
    n, secs = sink.stdout.readline().split()
    sink.wait()
    return gbit(int(n), float(secs))


def kernel_to_stack(stack: mipfast.Stack, lab: Lab, size: int, congestion: str) -> float:
    source = ns_python(lab.netns, SOURCE, "9102", str(size), congestion, wildcard(lab))
    source.stdout.readline()
    buf = bytearray(1 << 20)
    total = 0
    with stack.connect(peer_address(stack, lab, 9102), timeout=10) as conn:
        conn.settimeout(None)
        start = None
        while n := conn.recv_into(buf):
            if start is None:
                start = time.perf_counter()
            total += n
        secs = time.perf_counter() - start
    source.wait()
    assert total == size, (total, size)
    return gbit(total, secs)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def many_connections(stack: mipfast.Stack, lab: Lab, count: int) -> tuple[int, float, float]:
    """Connections held at once, stack bytes per connection, RSS KiB per connection."""
    accepted: list[mipfast.Connection] = []
    listener = stack.listen(9200, backlog=1024)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept(timeout=0.2)
                accepted.append(conn)
            except TimeoutError:
                pass

    base_memory = stack.tcp_info["memory"]
    base_rss = rss_kib()
    t = threading.Thread(target=accept_loop)
    t.start()
    clients = ns_python(lab.netns, CLIENTS, stack.ip, "9200", str(count), stdin=subprocess.PIPE)
    line = clients.stdout.readline().split()
    held = int(line[-1]) if line[0] == "connected" else int(line[2])
    deadline = time.monotonic() + 30
    while len(accepted) < held and time.monotonic() < deadline:
        time.sleep(0.1)
    info = stack.tcp_info
    per_conn = (info["memory"] - base_memory) / max(1, info["connections"])
    rss = (rss_kib() - base_rss) / max(1, len(accepted))
    alive = sum(1 for c in accepted if c.state == "ESTABLISHED")
    clients.stdin.write("\n")
    clients.stdin.flush()
    clients.wait()
    stop.set()
    t.join()
    for c in accepted:
        c.close()
    listener.close()
    return alive, per_conn, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=2000, help="megabytes per transfer")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5, help="rounds of the transfers; medians are reported")
    p.add_argument("--congestion", default="cubic", help="the kernel senders' congestion control")
    p.add_argument("--ipv6", action="store_true", help="every transfer over IPv6")
    args = p.parse_args()
    size = args.mb << 20
    # (offloads, the kernel senders' congestion control) by setting.
    settings = {"offloads off": (False, args.congestion), "offloads on": (True, args.congestion)}
    host = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    if host != args.congestion:
        settings[f"offloads on, {host}"] = (True, host)
    names = ("kernel -> kernel", "stack  -> kernel", "stack  -> kernel, frame by frame", "kernel -> stack ")
    runs = {(setting, name): [] for setting in settings for name in names}
    lab_options = {"dhcp": False, "ipv6": args.ipv6}
    with (
        KernelPair(ipv6=args.ipv6) as pair_off,
        KernelPair(offloads=True, tag="x", ipv6=args.ipv6) as pair_on,
        Lab(netns="mipfast-bench", iface="mfbench", peer="mfbench-peer", **lab_options) as lab_on,
        Lab(netns="mipfast-bench-off", iface="mfbenchoff", peer="mfbenchoff-p", **lab_options) as lab_off,
    ):
        # Both ends of the lab's pair as the reference's: offloads off (the kernel then cuts
        # and checksums our bursts in software, as its own), or left at the kernel's defaults.
        lab_off.run("ethtool", "-K", lab_off.peer, *OFFLOADS_OFF, check=False)
        subprocess.run(["ethtool", "-K", lab_off.iface, *OFFLOADS_OFF], check=False)
        labs = {False: (pair_off, lab_off), True: (pair_on, lab_on)}
        # Interleaved rounds, so that a noisy neighbour hurts every column alike.
        for i in range(args.runs):
            for setting, (offloads, congestion) in settings.items():
                pair, lab = labs[offloads]
                runs[setting, names[0]].append(pair.transfer(size, congestion))
                with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
                    runs[setting, names[1]].append(stack_to_kernel(stack, lab, size))
                    runs[setting, names[3]].append(kernel_to_stack(stack, lab, size, congestion))
                with mipfast.Stack(lab.iface, ip="10.77.0.2/24", segment_offload=False) as stack:
                    runs[setting, names[2]].append(stack_to_kernel(stack, lab, size))
                figures = ", ".join(f"{name.strip()} {runs[setting, name][-1]:.2f}" for name in names)
                print(f"round {i + 1}, {setting} (Gbit/s): {figures}", flush=True)
        for setting, (_, congestion) in settings.items():
            k = statistics.median(runs[setting, names[0]])
            reference = f"kernel -> kernel (Python sockets, veth, {congestion})"
            print(f"{setting}: {reference}: {k:.2f} Gbit/s (median)")
            for name in names[1:]:
                m = statistics.median(runs[setting, name])
                print(f"{setting}: {name}: {m:.2f} Gbit/s (median)  ({m / k:.2f}x kernel)")
        lab = lab_off
        with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
            alive, per_conn, rss = many_connections(stack, lab, args.connections)
        print(f"concurrent connections from the kernel held: {alive} of {args.connections}")
        print(
            f"memory per idle connection: {per_conn:.0f} B (stack accounting), "
            f"{rss:.2f} KiB RSS growth per connection (incl. Python objects)"
        )


if __name__ == "__main__":
    main()
