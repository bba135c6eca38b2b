"""Small requests through the stack beside the same Python code on kernel sockets, in one run:

* **64-byte request/response**: a Python client in this process sends 64 bytes and waits for them back from a
  kernel echo server in a namespace; p50/p99 of 10,000 round trips (after 200 discarded), on a mipfast
  `Connection` (driver sleeping in poll(), then with `busy_poll_us`) and on a kernel socket, the two
  taking turns in blocks of 1,000 within a round (this VM's speed shifts by a quarter from one second to the
  next). So many because the kernel's 250 Hz tick slows 0.6% of one-core trips by 20-40 µs on both sides:
  with 2,000 trips, 20 lay above p99, and a few tick trips more or less moved it by 10 µs. Three
  placements: wherever the scheduler puts the two ends, both on one core, and on two cores (the client
  thread and the echo server pinned): a round trip costs 6 µs or 60 µs on the kernel by placement alone.
* **HTTP keep-alive**: `wrk -t2 -c50` against a tiny thread-per-connection HTTP handler in this process,
  served by `stack.listen` and by a kernel listening socket (the very same handler function).
* **connection per request**: the same with `Connection: close` (wrk reconnects for every request). Both
  clients' namespaces reuse ports in TIME-WAIT (`net.ipv4.tcp_tw_reuse=1`, as load generators are set up):
  without it, about half of each round's 12,000 connections leave the client's port in TIME-WAIT for 60 s,
  and from the third round on both rates measure the client's search for a free port (300–1,500/s), not the
  server. With it, a reused port's SYN meets the server's TIME-WAIT, which must take it over (RFC 6191).
* **busy-poll**: the round trips and the keep-alive rate again on a stack with `busy_poll_us=50`, to show
  what spinning buys in latency and whether it costs the handler threads throughput.

The stack sits on the lab's veth (namespace `mipfast-bench`), the kernel reference on a second veth pair
from this namespace into another; offloads off on all four ends. Run as root:
`sudo .venv/bin/python bench/small_requests.py`. Medians of interleaved rounds; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import KERNEL_IP, KERNEL_NS, KERNEL_PEER_IP, KernelSide, sh  # noqa: E402
from tcp_bulk import OFFLOADS_OFF, ns_python  # noqa: E402

STACK_IP = "10.77.0.2"
ECHO_PORT, HTTP_PORT = 9400, 8080
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
CLOSING = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")

ECHO = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); print("listening", flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := c.recv(65536):
        c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def serve_http(conn: Any) -> None:
    """The tiny handler: one thread per connection, keep-alive unless the client asks to close."""
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            close = b"connection: close" in head.lower()
            conn.sendall(CLOSING if close else RESPONSE)
            if close:
                return
    except OSError:
        pass
    finally:
        conn.close()


def accept_loop(accept: Callable[[], Any], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = accept()
        except (TimeoutError, socket.timeout):
            continue
        except OSError:
            return
        threading.Thread(target=serve_http, args=(conn,), daemon=True).start()


Placement = tuple[int, int] | None
# Where the client thread and the echo server run: (client CPU, echo CPU), None for the scheduler's choice.
PLACEMENTS: dict[str, Placement] = {"": None, " one core": (0, 0), " two cores": (0, 1)}


# A side of a round-trip comparison: how to open a connection to its echo server, and that server's pid.
Side = tuple[Callable[[], Any], int]


def round_trips(
    kernel: Side, stack: Side, n: int, cpus: Placement = None, warmup: int = 200, blocks: int = 10
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(p50, p99) in µs of `n` 64-byte round trips on one connection per side, for the kernel and the stack:
    the two take turns in `blocks` blocks (in alternating order), so that a change in the machine's speed
    during the round reaches both. With `cpus`, this thread and both echo servers (their connection threads
    are made after the pinning, and inherit it) are pinned to them."""
    everywhere = os.sched_getaffinity(0)
    pids = (kernel[1], stack[1])
    if cpus is not None:
        os.sched_setaffinity(0, {cpus[0]})
        for pid in pids:
            os.sched_setaffinity(pid, {cpus[1]})
    conns = []
    payload = bytes(64)
    times: tuple[list[float], list[float]] = ([], [])

    def trips(conn: Any, count: int, into: list[float] | None) -> None:
        for _ in range(count):
            t = time.perf_counter_ns()
            conn.sendall(payload)
            got = 0
            while got < 64:
                got += len(conn.recv(64 - got))
            if into is not None:
                into.append((time.perf_counter_ns() - t) / 1000)

    try:
        conns = [kernel[0](), stack[0]()]
        for conn in conns:
            trips(conn, warmup, None)
        for b in range(blocks):
            for side in (0, 1) if b % 2 == 0 else (1, 0):
                trips(conns[side], n // blocks, times[side])
    finally:
        for conn in conns:
            conn.close()
        os.sched_setaffinity(0, everywhere)
        if cpus is not None:
            for pid in pids:
                os.sched_setaffinity(pid, everywhere)

    def percentiles(samples: list[float]) -> tuple[float, float]:
        samples.sort()
        return samples[len(samples) // 2], samples[len(samples) * 99 // 100]

    return percentiles(times[0]), percentiles(times[1])


def connector(stack: Any, ip: str) -> Callable[[], Any]:
    """Opens a TCP_NODELAY connection to the echo server through `stack`."""

    def connect() -> Any:
        c = stack.connect((ip, ECHO_PORT), timeout=5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    return connect


def wrk(netns: str, ip: str, seconds: int, close: bool) -> float:
    extra = ["-H", "Connection: close"] if close else []
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "wrk", "-t2", "-c50", f"-d{seconds}s", *extra, f"http://{ip}:{HTTP_PORT}/"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if m is None or "Non-2xx" in r.stdout:
        raise RuntimeError(f"wrk: {r.stdout}{r.stderr}")
    return float(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--trips", type=int, default=10000)
    p.add_argument("--wrk", action=argparse.BooleanOptionalAction, default=True, help="the HTTP rates too")
    a = p.parse_args()

    import mipfast
    from mipfast._lab import Lab

    with Lab(netns="mipfast-bench", iface="mfsr0", peer="mfsr1", dhcp=False) as lab, KernelSide():
        sh("ip", "netns", "exec", lab.netns, "ethtool", "-K", lab.peer, *OFFLOADS_OFF, check=False)
        sh("ethtool", "-K", lab.iface, *OFFLOADS_OFF, check=False)
        for ns in (lab.netns, KERNEL_NS):  # wrk's namespaces: see "connection per request" above
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
        echoes = [ns_python(ns, ECHO, str(ECHO_PORT)) for ns in (lab.netns, KERNEL_NS)]
        stack_echo, kernel_echo = echoes  # `ip netns exec` execs: these are the servers' pids
        placements = {k: v for k, v in PLACEMENTS.items() if v is None or max(v) < (os.cpu_count() or 1)}
        for e in echoes:
            e.stdout.readline()
        stop = threading.Event()
        kernel_listener = socket.socket()
        kernel_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        kernel_listener.bind((KERNEL_IP, HTTP_PORT))
        kernel_listener.listen(512)
        kernel_listener.settimeout(0.5)
        threading.Thread(target=accept_loop, args=(kernel_listener.accept, stop), daemon=True).start()

        def kernel_connect() -> socket.socket:
            s = socket.create_connection((KERNEL_PEER_IP, ECHO_PORT))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s

        kernel_side = (kernel_connect, kernel_echo.pid)
        results: dict[str, list[Any]] = {}

        def add(name: str, value: Any) -> None:
            results.setdefault(name, []).append(value)

        try:
            with mipfast.Stack(lab.iface, ip=f"{STACK_IP}/24") as stack:
                stack.start()
                listener = stack.listen(HTTP_PORT, backlog=512)
                accept = lambda: listener.accept(timeout=0.5)  # noqa: E731
                threading.Thread(target=accept_loop, args=(accept, stop), daemon=True).start()

                stack_side = (connector(stack, lab.peer_ip), stack_echo.pid)
                for i in range(a.rounds):
                    for where, cpus in placements.items():
                        kernel_trips, stack_trips = round_trips(kernel_side, stack_side, a.trips, cpus)
                        add(f"rtt kernel{where}", kernel_trips)
                        add(f"rtt stack{where}", stack_trips)
                    for close in (False, True) if a.wrk else ():
                        kind = "close" if close else "keep-alive"
                        add(f"wrk {kind} kernel", wrk(KERNEL_NS, KERNEL_IP, a.seconds, close))
                        add(f"wrk {kind} stack", wrk(lab.netns, STACK_IP, a.seconds, close))
                    figures = ", ".join(f"{k} {v[-1]}" for k, v in results.items())
                    print(f"round {i + 1}: {figures}", flush=True)
                listener.close()
            with mipfast.Stack(lab.iface, ip=f"{STACK_IP}/24", busy_poll_us=50) as stack:
                stack.start()
                listener = stack.listen(HTTP_PORT, backlog=512)
                accept = lambda: listener.accept(timeout=0.5)  # noqa: E731
                threading.Thread(target=accept_loop, args=(accept, stop), daemon=True).start()
                busy_side = (connector(stack, lab.peer_ip), stack_echo.pid)
                for _ in range(a.rounds):
                    for where, cpus in placements.items():
                        kernel_trips, stack_trips = round_trips(kernel_side, busy_side, a.trips, cpus)
                        add(f"rtt kernel (beside busy-poll){where}", kernel_trips)
                        add(f"rtt stack busy-poll{where}", stack_trips)
                    if a.wrk:  # what spinning costs the handler threads' throughput
                        kernel_rate = wrk(KERNEL_NS, KERNEL_IP, a.seconds, False)
                        add("wrk keep-alive kernel (beside busy-poll)", kernel_rate)
                        add("wrk keep-alive stack busy-poll", wrk(lab.netns, STACK_IP, a.seconds, False))
                listener.close()
        finally:
            stop.set()
            kernel_listener.close()
            for e in echoes:
                e.kill()

    def med(name: str, i: int | None = None) -> float:
        values = results[name] if i is None else [v[i] for v in results[name]]
        return statistics.median(values)

    pairs = [(f"rtt kernel{w}", f"rtt stack{w}") for w in placements]
    pairs += [(f"rtt kernel (beside busy-poll){w}", f"rtt stack busy-poll{w}") for w in placements]
    for kernel, stack in pairs:
        for i, pct in ((0, "p50"), (1, "p99")):
            k, s = med(kernel, i), med(stack, i)
            print(f"64-byte round trip {pct} ({stack}): stack {s:7.1f} µs, kernel {k:7.1f} µs ({s / k:.2f}x)")
    rates = [(f"wrk {kind} kernel", f"wrk {kind} stack") for kind in ("keep-alive", "close")]
    rates.append(("wrk keep-alive kernel (beside busy-poll)", "wrk keep-alive stack busy-poll"))
    for kernel, stack in rates if a.wrk else ():
        k, s = med(kernel), med(stack)
        print(f"wrk -c 50 ({stack}): stack {s:9.1f} req/s, kernel {k:9.1f} req/s ({s / k:.2f}x)")


if __name__ == "__main__":
    main()
