"""The dashboard through the stack beside the very same handler on kernel sockets:

* `wrk -c 50` against `/api/status` (keep-alive, logged in): requests per second;
* 200 browsers' worth of `/api/watch` WebSockets held for 10 s: snapshots delivered and the CPU
  this process (stack, driver thread and event loop together) spent meanwhile. The dashboard shows the
  stack's connection table whichever side serves it, so while the kernel side's watchers run, 200 idle
  connections to the stack are held as well: both sides then push the same snapshots (200 rows).

One process serves both: `mipfast.dashboard`'s `HttpServer` over `mipfast.asyncio.start_server` on the
stack (lab namespace, veth, offloads off) and over `asyncio.start_server` on a kernel address (a second
veth pair into another namespace, offloads off). Clients run in the namespaces. Run as root:
`sudo .venv/bin/python bench/dashboard.py`. Medians of interleaved rounds; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_bulk import OFFLOADS_OFF, ns_python  # noqa: E402

KERNEL_NS, KERNEL_HOST, KERNEL_PEER = "mipfast-bench-k", "mfdk0", "mfdk1"
KERNEL_IP, KERNEL_PEER_IP = "10.79.0.1", "10.79.0.2"
STACK_IP, STACK_NS = "10.77.0.2", "mipfast-bench"

WATCHERS = """
import selectors, socket, sys, time
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import Request, TextMessage
host, cookie, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection((host, 8000))
    ws = WSConnection(ConnectionType.CLIENT)
    s.sendall(ws.send(Request(host=host, target="/api/watch", extra_headers=[(b"Cookie", cookie.encode())])))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, ws)
print("held", flush=True)
messages, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(0.2):
        data = key.fileobj.recv(1 << 20)
        key.data.receive_data(data or None)
        messages += sum(1 for e in key.data.events() if isinstance(e, TextMessage) and e.message_finished)
print(messages, flush=True)
"""


IDLE = """
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port)) for _ in range(n)]
print("held", flush=True)
sys.stdin.readline()
"""
IDLE_PORT = 8001


def sh(*cmd: str, check: bool = True) -> None:
    subprocess.run(list(cmd), check=check, capture_output=True)


class KernelSide:
    """A veth pair: this process's kernel sockets on one end, the clients' namespace on the other."""

    def __enter__(self) -> KernelSide:
        self.__exit__()
        sh("ip", "netns", "add", KERNEL_NS)
        sh("ip", "link", "add", KERNEL_HOST, "type", "veth", "peer", "name", KERNEL_PEER)
        sh("ip", "link", "set", KERNEL_PEER, "netns", KERNEL_NS)
        sh("ip", "addr", "add", f"{KERNEL_IP}/24", "dev", KERNEL_HOST)
        sh("ip", "link", "set", KERNEL_HOST, "up")
        sh("ip", "-n", KERNEL_NS, "addr", "add", f"{KERNEL_PEER_IP}/24", "dev", KERNEL_PEER)
        sh("ip", "-n", KERNEL_NS, "link", "set", KERNEL_PEER, "up")
        sh("ip", "-n", KERNEL_NS, "link", "set", "lo", "up")
        sh("ethtool", "-K", KERNEL_HOST, *OFFLOADS_OFF, check=False)
        sh("ip", "netns", "exec", KERNEL_NS, "ethtool", "-K", KERNEL_PEER, *OFFLOADS_OFF, check=False)
        return self

    def __exit__(self, *exc: object) -> None:
        sh("ip", "netns", "del", KERNEL_NS, check=False)
        sh("ip", "link", "del", KERNEL_HOST, check=False)


def wrk(netns: str, ip: str, cookie: str, seconds: int) -> float:
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "wrk", "-t2", "-c50", f"-d{seconds}s", "-H", f"Cookie: {cookie}",
         f"http://{ip}:8000/api/status"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if m is None or errors:
        raise RuntimeError(f"wrk: {r.stdout}{r.stderr}")
    return float(m.group(1))


def watchers(netns: str, ip: str, cookie: str, n: int, seconds: float) -> tuple[int, float]:
    """(snapshots delivered, CPU seconds this process spent per wall second) while n watch."""
    if ip == STACK_IP:
        return _watch(netns, ip, cookie, n, seconds)
    # The stack's table as long as when the watchers are its own connections.
    idle = ns_python(STACK_NS, IDLE, STACK_IP, str(IDLE_PORT), str(n), stdin=subprocess.PIPE)
    assert idle.stdout is not None and idle.stdout.readline().strip() == "held"
    try:
        return _watch(netns, ip, cookie, n, seconds)
    finally:
        idle.communicate("\n")


def _watch(netns: str, ip: str, cookie: str, n: int, seconds: float) -> tuple[int, float]:
    p = ns_python(netns, WATCHERS, ip, cookie, str(n), str(seconds))
    assert p.stdout.readline().strip() == "held"
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    messages = int(p.stdout.readline())
    after, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    p.wait()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return messages, cpu / (t1 - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    a = p.parse_args()

    import mipfast
    import mipfast.asyncio as maio
    from mipfast._lab import Lab
    from mipfast.dashboard.app import Dashboard
    from mipfast.dashboard.auth import COOKIE, Accounts
    from mipfast.dashboard.http import HttpServer, Limits

    with Lab(netns=STACK_NS, iface="mfbs0", peer="mfbs1", dhcp=False) as lab, KernelSide():
        sh("ip", "netns", "exec", lab.netns, "ethtool", "-K", lab.peer, *OFFLOADS_OFF, check=False)
        sh("ethtool", "-K", lab.iface, *OFFLOADS_OFF, check=False)
        with mipfast.Stack(lab.iface, ip=f"{STACK_IP}/24") as stack:
            dashboard = Dashboard(stack, Accounts({"user": "bench"}))
            http = HttpServer(dashboard, Limits(max_clients=512))
            cookie = f"{COOKIE}={dashboard.sessions.open('user').token}"
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            servers = []

            async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.read()  # held open until the client goes
                writer.close()

            async def start() -> None:
                servers.append(await maio.start_server(http.serve, stack, 8000, backlog=512))
                servers.append(await maio.start_server(idle, stack, IDLE_PORT, backlog=512))
                servers.append(await asyncio.start_server(http.serve, KERNEL_IP, 8000, backlog=512))
                ready.set()

            async def shutdown() -> None:
                # Servers, feeds and every handler still running end before the loop stops.
                for server in servers:
                    server.close()
                dashboard.watchers.close()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.run_until_complete(start())
                loop.run_forever()

            threading.Thread(target=run, daemon=True).start()
            ready.wait(10)
            sides = {"kernel": (KERNEL_NS, KERNEL_IP), "stack": (lab.netns, STACK_IP)}
            rates: dict[str, list[float]] = {k: [] for k in sides}
            for _ in range(a.rounds):
                for side, (ns, ip) in sides.items():
                    rates[side].append(wrk(ns, ip, cookie, a.seconds))
            held = {side: watchers(ns, ip, cookie, 200, 10.0) for side, (ns, ip) in sides.items()}
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
    k, s = statistics.median(rates["kernel"]), statistics.median(rates["stack"])
    print(f"wrk -c 50 /api/status, requests/s   kernel {k:10.1f}  stack {s:10.1f} ({s / k:.2f}x)")
    for side, (messages, cpu) in held.items():
        print(f"200 watchers for 10 s, {side:6}: {messages} snapshots delivered, CPU {cpu:.0%} of a core")


if __name__ == "__main__":
    main()
