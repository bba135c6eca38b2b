"""TCP bulk throughput through the stack, beside the kernel, in one run:

* stack → kernel: Python `sendall` on a mipfast Connection, kernel sink in the lab namespace;
  with the kernel's segmentation offload cutting our TCP bursts (the default), and frame by frame.
* kernel → stack: kernel source in the lab namespace, Python `recv_into` on the Connection.
* kernel → kernel: the same Python sink/source on kernel sockets over an identical veth pair
  between two namespaces, offloads off (tso gso gro tx rx), MTU 1500.

Then: how many concurrent connections from the kernel the stack holds, and the
memory per idle connection (the stack's own accounting of connection blocks,
tables and buffers, and the process RSS growth).

Run as root: `sudo .venv/bin/python bench/tcp_bulk.py`. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time

import mipfast
from mipfast._lab import Lab

SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
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
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
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
    """Two namespaces joined by a veth pair, offloads off: the kernel reference.

    Made once for all rounds: deleting a namespace goes on in the background for a while,
    and would slow whatever is measured next."""

    A, B = "mipfast-bench-a", "mipfast-bench-b"

    def __enter__(self) -> KernelPair:
        self._delete()
        for ns in (self.A, self.B):
            self._run("ip", "netns", "add", ns)
        self._run(
            "ip", "link", "add", "mfbench0", "netns", self.A, "type", "veth", "peer", "name", "mfbench1",
            "netns", self.B,
        )  # fmt: skip
        for ns, dev, ip in ((self.A, "mfbench0", "10.78.0.1/24"), (self.B, "mfbench1", "10.78.0.2/24")):
            self._run("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            self._run("ip", "-n", ns, "link", "set", dev, "up")
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

    def transfer(self, size: int) -> float:
        """Python sink/source on kernel sockets across the pair."""
        sink = ns_python(self.B, SINK, "9100")
        sink.stdout.readline()
        subprocess.run(
            [
                "ip", "netns", "exec", self.A, sys.executable, "-c",
                "import socket,sys; c=socket.create_connection(('10.78.0.2',9100)); b=bytes(1<<20)\n"
                f"for _ in range({size >> 20}): c.sendall(b)\nc.close()",
            ],
            check=True,
        )  # fmt: skip
        n, secs = sink.stdout.readline().split()
        sink.wait()
        return gbit(int(n), float(secs))


def stack_to_kernel(stack: mipfast.Stack, lab: Lab, size: int) -> float:
    sink = ns_python(lab.netns, SINK, "9101")
    sink.stdout.readline()
    block = bytes(1 << 20)
    with stack.connect((lab.peer_ip, 9101), timeout=10) as conn:
        conn.settimeout(None)
        for _ in range(size >> 20):
            conn.sendall(block)
    n, secs = sink.stdout.readline().split()
    sink.wait()
    return gbit(int(n), float(secs))


def kernel_to_stack(stack: mipfast.Stack, lab: Lab, size: int) -> float:
    source = ns_python(lab.netns, SOURCE, "9102", str(size))
    source.stdout.readline()
    buf = bytearray(1 << 20)
    total = 0
    with stack.connect((lab.peer_ip, 9102), timeout=10) as conn:
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
    p.add_argument("--mb", type=int, default=400, help="megabytes per transfer")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5, help="rounds of the transfers; medians are reported")
    args = p.parse_args()
    size = args.mb << 20
    runs: dict[str, list[float]] = {
        "kernel -> kernel": [],
        "stack  -> kernel": [],
        "stack  -> kernel, frame by frame": [],
        "kernel -> stack ": [],
    }
    with (
        KernelPair() as pair,
        Lab(netns="mipfast-bench", iface="mfbench", peer="mfbench-peer", dhcp=False) as lab,
    ):
        # Both ends of the lab's pair as the reference's: no offloads, so the
        # kernel cuts and checksums our bursts in software, as its own.
        lab.run("ethtool", "-K", lab.peer, *OFFLOADS_OFF, check=False)
        subprocess.run(["ethtool", "-K", lab.iface, *OFFLOADS_OFF], check=False)
        # Interleaved rounds, so that a noisy neighbour hurts every column alike.
        for i in range(args.runs):
            runs["kernel -> kernel"].append(pair.transfer(size))
            with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
                runs["stack  -> kernel"].append(stack_to_kernel(stack, lab, size))
                runs["kernel -> stack "].append(kernel_to_stack(stack, lab, size))
            with mipfast.Stack(lab.iface, ip="10.77.0.2/24", segment_offload=False) as stack:
                runs["stack  -> kernel, frame by frame"].append(stack_to_kernel(stack, lab, size))
            figures = ", ".join(f"{name.strip()} {v[-1]:.2f}" for name, v in runs.items())
            print(f"round {i + 1} (Gbit/s): {figures}", flush=True)
        k = statistics.median(runs["kernel -> kernel"])
        print(f"kernel -> kernel (Python sockets, veth, offloads off): {k:.2f} Gbit/s (median)")
        for name, values in runs.items():
            if name != "kernel -> kernel":
                m = statistics.median(values)
                print(f"{name}: {m:.2f} Gbit/s (median)  ({m / k:.2f}x kernel)")
        with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
            alive, per_conn, rss = many_connections(stack, lab, args.connections)
        print(f"concurrent connections from the kernel held: {alive} of {args.connections}")
        print(
            f"memory per idle connection: {per_conn:.0f} B (stack accounting), "
            f"{rss:.2f} KiB RSS growth per connection (incl. Python objects)"
        )


if __name__ == "__main__":
    main()
