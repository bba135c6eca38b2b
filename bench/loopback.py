"""A connection to the stack's own address beside the kernel's loopback, in one run:

the same Python program (a thread reading with `recv_into`, the main thread writing 1 MiB
`sendall`s) on a mipfast connection from the stack to itself, and on kernel sockets over
127.0.0.1 in a namespace of its own (so that nothing of the host's is used). Then 64-byte
round trips between two threads on the same connection, p50 of 20,000.

Run as root: `sudo .venv/bin/python bench/loopback.py`. Medians of interleaved rounds; asserts
nothing.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ONE_SIDE = """
import socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
from loopback import measure
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
port = l.getsockname()[1]
connect = lambda: socket.create_connection(("127.0.0.1", port))
print(*measure(connect, lambda: l.accept()[0], int(sys.argv[2])))
"""


def measure(connect: Callable[[], Any], accept: Callable[[], Any], mb: int) -> tuple[float, float]:
    """(Gbit/s one way, p50 µs of a 64-byte round trip) between two threads of this process."""
    client, server = connect(), accept()
    size = mb << 20

    def sink() -> None:
        buf = bytearray(1 << 20)
        while server.recv_into(buf):
            pass

    reader = threading.Thread(target=sink)
    reader.start()
    block = bytes(1 << 20)
    start = time.perf_counter()
    for _ in range(mb):
        client.sendall(block)
    client.close()
    reader.join()
    gbit = size * 8 / (time.perf_counter() - start) / 1e9
    server.close()

    client, server = connect(), accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def echo() -> None:
        while data := server.recv(64):
            server.sendall(data)

    echoer = threading.Thread(target=echo)
    echoer.start()
    trips = []
    payload = bytes(64)
    for _ in range(20_000):
        t = time.perf_counter_ns()
        client.sendall(payload)
        got = 0
        while got < 64:
            got += len(client.recv(64 - got))
        trips.append((time.perf_counter_ns() - t) / 1000)
    client.close()
    echoer.join()
    server.close()
    trips.sort()
    return gbit, trips[len(trips) // 2]


def kernel(mb: int, netns: str) -> tuple[float, float]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", ONE_SIDE, str(Path(__file__).parent), str(mb)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--mb", type=int, default=1000, help="megabytes per transfer")
    a = p.parse_args()

    import mipfast
    from mipfast._lab import Lab

    netns = "mipfast-bench-lo"
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    results: dict[str, list[tuple[float, float]]] = {"kernel": [], "stack": []}
    try:
        lab = Lab(netns="mipfast-bench", iface="mfbenchlo", peer="mfbenchlo-p", dhcp=False)
        with lab, mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
            listener = stack.listen(9900)
            for i in range(a.rounds):
                results["kernel"].append(kernel(a.mb, netns))
                results["stack"].append(
                    measure(
                        lambda: stack.connect(("10.77.0.2", 9900), timeout=5),
                        lambda: listener.accept(timeout=5)[0],
                        a.mb,
                    )
                )
                k, s = results["kernel"][-1], results["stack"][-1]
                kernel_side = f"kernel {k[0]:.2f} Gbit/s {k[1]:.1f} µs"
                print(f"round {i + 1}: {kernel_side}, stack {s[0]:.2f} Gbit/s {s[1]:.1f} µs")
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    for i, (what, unit) in enumerate((("bulk, one way", "Gbit/s"), ("64-byte round trip p50", "µs"))):
        k = statistics.median(r[i] for r in results["kernel"])
        s = statistics.median(r[i] for r in results["stack"])
        print(f"{what}: stack {s:.2f} {unit}, kernel {k:.2f} {unit} ({s / k:.2f}x)")


if __name__ == "__main__":
    main()
