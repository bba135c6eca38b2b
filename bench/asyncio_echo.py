"""asyncio through the stack beside asyncio on kernel sockets, the same Python client code on both:

* echo round trips per second, 64-byte messages, on 1 connection and on 100 at once;
* a connection per request: open, 64 bytes there and back, close;
* bulk: one connection reading 200 MB from a kernel source;
* the bridge (mipfast.bridge.socket_for, genuine sockets): the same round trips and bulk through
  asyncio's own ``open_connection(sock=...)``.

Servers are kernel Python programs in a namespace. The kernel reference runs the client in a
second namespace over an identical veth pair, offloads off (tcp_bulk.py's KernelPair).
Run as root: `sudo .venv/bin/python bench/asyncio_echo.py`. Medians of interleaved rounds; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_bulk import KernelPair, ns_python  # noqa: E402

SERVER = """
import asyncio, sys
async def echo(r, w):
    while data := await r.read(65536):
        w.write(data); await w.drain()
    w.close()
async def source(r, w):
    block = bytes(1 << 20)
    for _ in range(int(sys.argv[2])):
        w.write(block); await w.drain()
    w.close()
async def main():
    await asyncio.start_server(echo, "0.0.0.0", int(sys.argv[1]), backlog=512)
    await asyncio.start_server(source, "0.0.0.0", int(sys.argv[1]) + 1)
    print("listening", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

BULK_MB = 200


async def round_trips(open_connection, conns: int, seconds: float) -> float:
    """The measured client code: ping-pong 64 bytes on `conns` connections for `seconds`."""
    streams = [await open_connection(9500) for _ in range(conns)]
    count = 0
    end = time.perf_counter() + seconds

    async def one(reader, writer):
        nonlocal count
        msg = b"x" * 64
        while time.perf_counter() < end:
            writer.write(msg)
            await reader.readexactly(64)
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(r, w) for r, w in streams))
    elapsed = time.perf_counter() - start
    for _, w in streams:
        w.close()
    return count / elapsed


async def per_request(open_connection, seconds: float) -> float:
    """A connection per request: open, 64 bytes there and back, close; requests per second."""
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        reader, writer = await open_connection(9500)
        writer.write(b"x" * 64)
        await reader.readexactly(64)
        writer.close()
        await writer.wait_closed()
        count += 1
    return count / (time.perf_counter() - start)


async def bulk(open_connection) -> float:
    reader, writer = await open_connection(9501)
    n = 0
    start = time.perf_counter()
    while chunk := await reader.read(1 << 20):
        n += len(chunk)
    elapsed = time.perf_counter() - start
    writer.close()
    return n * 8 / elapsed / 1e9


async def measure(open_connection) -> dict[str, float]:
    return {
        "rtt_1": await round_trips(open_connection, 1, 2.0),
        "rtt_100": await round_trips(open_connection, 100, 2.0),
        "per_request": await per_request(open_connection, 2.0),
        "bulk_gbit": await bulk(open_connection),
    }


def kernel_client(host: str) -> dict[str, float]:
    async def opener(port):
        return await asyncio.open_connection(host, port)

    return asyncio.run(measure(opener))


def stack_client(stack, host: str, bridged: bool) -> dict[str, float]:
    import mipfast.asyncio as maio
    import mipfast.bridge

    async def direct(port):
        return await maio.open_connection(stack, host, port)

    async def bridge(port):
        conn = await asyncio.get_running_loop().run_in_executor(None, stack.connect, (host, port), 5)
        return await asyncio.open_connection(sock=mipfast.bridge.socket_for(conn))

    return asyncio.run(measure(bridge if bridged else direct))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--client-kernel", help=argparse.SUPPRESS)  # internal: the kernel-side client
    a = p.parse_args()
    if a.client_kernel:
        print(json.dumps(kernel_client(a.client_kernel)))
        return

    import mipfast
    from mipfast._lab import Lab

    results: dict[str, list[dict[str, float]]] = {"kernel": [], "stack": [], "bridge": []}
    with Lab(netns="mipfast-bench", iface="mfbs0", peer="mfbs1", dhcp=False) as lab, KernelPair() as pair:
        servers = [
            ns_python(lab.netns, SERVER, "9500", str(BULK_MB)),
            ns_python(pair.B, SERVER, "9500", str(BULK_MB)),
        ]
        for s in servers:
            s.stdout.readline()
        with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
            for _ in range(a.rounds):
                r = subprocess.run(
                    ["ip", "netns", "exec", pair.A, sys.executable, __file__, "--client-kernel", "10.78.0.2"],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                results["kernel"].append(json.loads(r.stdout))
                results["stack"].append(stack_client(stack, lab.peer_ip, bridged=False))
                results["bridge"].append(stack_client(stack, lab.peer_ip, bridged=True))
        for s in servers:
            s.kill()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    units = {
        "rtt_1": "round trips/s, 1 connection",
        "rtt_100": "round trips/s, 100 connections",
        "per_request": "a connection per request, /s",
        "bulk_gbit": "Gbit/s bulk receive",
    }
    for metric, unit in units.items():
        k, ours, bridged = (med[side][metric] for side in ("kernel", "stack", "bridge"))
        print(
            f"{unit:32} kernel {k:10.2f}  stack {ours:10.2f} ({ours / k:.2f}x)"
            f"  bridge {bridged:10.2f} ({bridged / k:.2f}x)"
        )


if __name__ == "__main__":
    main()
