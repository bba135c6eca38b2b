"""Many connections: N (default 100,000) established connections from kernel clients, held at once.

Client processes in a namespace (15,000 connections each, under the descriptor limit, each from its own
source address) open N connections and hold them. This process accepts them with one Python accept loop, on
`stack.listen` (the lab's veth) and, as the reference, on a kernel listening socket (a second veth pair into
another namespace): the very same loop (the kernel's holds as many as this process may have descriptors;
the stack's connections need none). Reported: connections held, the accept rate (accepted per second,
first to last), and for the stack the memory per idle connection by its own accounting (connection blocks,
tables, timers, buffers) and the process RSS growth. Run as root: `sudo .venv/bin/python bench/scale.py`.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import KERNEL_IP, KERNEL_NS, KERNEL_PEER, KernelSide, sh  # noqa: E402
from tcp_bulk import ns_python, rss_kib  # noqa: E402

STACK_IP = "10.77.0.2"
PORT = 9300
SOURCES = 8  # source addresses per namespace: .11 to .18, one per client process

#: Connections per client process (each under the descriptor limit).
PER_PROCESS = 15_000

CLIENTS = """
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, n, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
conns = []
for i in range(n):
    s = socket.socket()
    try:
        s.bind((sources[i % len(sources)], 0))
        s.connect((host, port))
    except OSError as e:
        print("failed after", len(conns), e, flush=True); s.close(); break
    conns.append(s)
print("connected", len(conns), flush=True)
sys.stdin.readline()
"""


def hold(
    netns: str, host: str, n: int, sources: list[str], accept: Callable[[], Any]
) -> tuple[list[Any], float]:
    """Kernel clients in `netns` open `n` connections to host:PORT; `accept` takes them.
    Returns (accepted, accepts per second) and leaves the clients holding until released."""
    accepted: list[Any] = []
    times: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)
            times.append(time.perf_counter())

    t = threading.Thread(target=loop)
    t.start()
    processes = []
    for i in range(0, n, PER_PROCESS):
        share = str(min(PER_PROCESS, n - i))
        source = sources[(i // PER_PROCESS) % len(sources)]
        processes.append(ns_python(netns, CLIENTS, host, str(PORT), share, source, stdin=subprocess.PIPE))
    connected = 0
    for clients in processes:
        words = clients.stdout.readline().split()
        connected += int(words[-1]) if words[0] == "connected" else int(words[2])
    deadline = time.monotonic() + 60
    while len(accepted) < connected and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join()
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    hold.processes = processes  # type: ignore[attr-defined]
    return accepted, rate


def release() -> None:
    for clients in hold.processes:  # type: ignore[attr-defined]
        clients.stdin.write("\n")
        clients.stdin.flush()
        clients.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=100_000)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Kernel sockets need a descriptor each here: the reference holds what the limit allows.
    kernel_n = min(a.connections, hard - 1000)

    import socket

    import mipfast
    from mipfast._lab import Lab

    with Lab(netns="mipfast-bench", iface="mfsc0", peer="mfsc1", dhcp=False) as lab, KernelSide():
        lab_sources = [f"10.77.0.{11 + i}" for i in range(SOURCES)]
        kernel_sources = [f"10.79.0.{11 + i}" for i in range(SOURCES)]
        for ip in lab_sources:
            sh("ip", "-n", lab.netns, "addr", "add", f"{ip}/24", "dev", lab.peer)
        for ip in kernel_sources:
            sh("ip", "-n", KERNEL_NS, "addr", "add", f"{ip}/24", "dev", KERNEL_PEER)
        for ns in (lab.netns, KERNEL_NS):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000")

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((KERNEL_IP, PORT))
        listener.listen(4096)
        listener.settimeout(0.2)
        kernel_conns, kernel_rate = hold(KERNEL_NS, KERNEL_IP, kernel_n, kernel_sources, listener.accept)
        kernel_held = len(kernel_conns)
        release()
        for c in kernel_conns:
            c.close()
        listener.close()
        del kernel_conns

        with mipfast.Stack(lab.iface, ip=f"{STACK_IP}/24") as stack:
            stack.start()
            server = stack.listen(PORT, backlog=4096)
            base_memory, base_rss = stack.tcp_info["memory"], rss_kib()
            take = lambda: server.accept(timeout=0.2)  # noqa: E731
            conns, rate = hold(lab.netns, STACK_IP, a.connections, lab_sources, take)
            time.sleep(1.0)  # the handshakes' buffers given back: idle now
            info = stack.tcp_info
            per_conn = (info["memory"] - base_memory) / max(1, info["connections"])
            rss = (rss_kib() - base_rss) / max(1, len(conns))
            alive = sum(1 for c in conns if c.state == "ESTABLISHED")
            release()
            for c in conns:
                c.close()
            server.close()
    print(f"connections held: stack {alive} of {a.connections}, kernel {kernel_held} of {kernel_n}")
    ratio = rate / kernel_rate if kernel_rate else float("nan")
    print(f"accept rate (one Python loop): stack {rate:.0f}/s, kernel {kernel_rate:.0f}/s ({ratio:.2f}x)")
    print(f"memory per idle connection: {per_conn:.0f} B (stack accounting), {rss:.2f} KiB RSS (with Python)")


if __name__ == "__main__":
    main()
