"""DHCP-to-READY time and ping RTT from the kernel to the stack, each beside a
reference measured in the same run on the same machine:

* READY: `mipfast.Stack(...)` until `wait_ready()` returns, against busybox
  `udhcpc` getting a lease from the same dnsmasq (`--no-ping`).
* ping: the kernel in the lab namespace pings the stack (sleeping in poll(),
  then with busy-poll), against kernel-to-kernel ping over an identical veth pair.

Run as root: `sudo .venv/bin/python bench/startup_ping.py`. Prints figures and
ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import mipfast
from mipfast._lab import Lab


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ping_rtts(cmd_prefix: list[str], ip: str, count: int, interval: float) -> list[float]:
    r = subprocess.run(
        [*cmd_prefix, "ping", "-c", str(count), "-i", str(interval), "-W", "1", ip],
        capture_output=True,
        text=True,
    )
    rtts = [float(m) * 1000 for m in re.findall(r"time=([\d.]+) ms", r.stdout)]
    if len(rtts) < count * 0.9:
        raise RuntimeError(f"ping lost too much: {len(rtts)}/{count}\n{r.stdout[-500:]}")
    return rtts[5:]  # the first replies include ARP


def time_ready(lab: Lab, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        with mipfast.Stack(lab.iface) as stack:
            stack.wait_ready(timeout=10)
            times.append(time.perf_counter() - t)
    return times


def time_udhcpc(lab: Lab, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            ["busybox", "udhcpc", "-i", lab.iface, "-n", "-q", "-f", "-s", "/bin/true", "-t", "3", "-T", "1"],
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - t)
    return times


def kernel_pair_rtts(count: int, interval: float) -> list[float]:
    a, b = "mipfast-bench-a", "mipfast-bench-b"
    cmds = [
        ["ip", "netns", "add", a],
        ["ip", "netns", "add", b],
        ["ip", "link", "add", "mfbench0", "netns", a, "type", "veth", "peer", "name", "mfbench1", "netns", b],
        ["ip", "-n", a, "addr", "add", "10.78.0.1/24", "dev", "mfbench0"],
        ["ip", "-n", b, "addr", "add", "10.78.0.2/24", "dev", "mfbench1"],
        ["ip", "-n", a, "link", "set", "mfbench0", "up"],
        ["ip", "-n", b, "link", "set", "mfbench1", "up"],
    ]
    try:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True)
        return ping_rtts(["ip", "netns", "exec", a], "10.78.0.2", count, interval)
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def summary(name: str, values: list[float], unit: str) -> str:
    median, p99 = statistics.median(values), percentile(values, 0.99)
    return f"{name:<44} median {median:8.1f} {unit}   p99 {p99:8.1f} {unit}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=1000, help="pings per measurement")
    p.add_argument("--interval", type=float, default=0.002)
    p.add_argument("--runs", type=int, default=5, help="DHCP runs per measurement")
    args = p.parse_args()

    with Lab(netns="mipfast-bench", iface="mfbench", peer="mfbench-peer") as lab:
        ready = time_ready(lab, args.runs)
        udhcpc = time_udhcpc(lab, args.runs)
        print(f"{'DHCP to READY, mipfast.Stack':<44} median {statistics.median(ready) * 1000:8.1f} ms")
        print(
            f"{'DHCP lease, busybox udhcpc (reference)':<44} "
            f"median {statistics.median(udhcpc) * 1000:8.1f} ms"
        )
        print(
            f"{'  ratio mipfast / udhcpc':<44} {statistics.median(ready) / statistics.median(udhcpc):8.2f}x"
        )

        kernel = kernel_pair_rtts(args.count, args.interval)
        with mipfast.Stack(lab.iface, ip="10.77.0.50/24") as stack:
            stack.wait_ready(1)
            sleeping = ping_rtts(lab.ns(), "10.77.0.50", args.count, args.interval)
        with mipfast.Stack(lab.iface, ip="10.77.0.51/24", busy_poll_us=50_000) as stack:
            stack.wait_ready(1)
            busy = ping_rtts(lab.ns(), "10.77.0.51", args.count, args.interval)
    print(summary("ping kernel -> kernel (reference)", kernel, "us"))
    print(summary("ping kernel -> mipfast, sleeping in poll()", sleeping, "us"))
    print(summary("ping kernel -> mipfast, busy_poll_us=50000", busy, "us"))
    k = statistics.median(kernel)
    print(f"{'  ratio sleeping / kernel (median)':<44} {statistics.median(sleeping) / k:8.2f}x")
    print(f"{'  ratio busy-poll / kernel (median)':<44} {statistics.median(busy) / k:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
