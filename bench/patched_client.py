"""An unmodified asyncio client through `python -m mipfast.patch` beside the same client on kernel sockets.

The client is the same program on both sides (`CLIENT` below): `asyncio.open_connection`, a 64-byte request,
its echo, close; first one connection after another (a connection per request), then 50 connections at once,
each making 200 requests on its own connection (keep-alive). Once under `python -m mipfast.patch -i <lab
interface>` (every socket a bridged `socket.socket`, its non-blocking connect the stack's), once on a kernel
veth pair between two namespaces (the kernel's offloads at their defaults). The echo server is the same
asyncio program on kernel sockets in the peer's namespace. Rounds interleave the two; medians. Run as root:
`sudo .venv/bin/python bench/patched_client.py [--rounds 5]`. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_bulk import KernelPair  # noqa: E402

from mipfast._lab import Lab  # noqa: E402

ECHO = """\
import asyncio, sys

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(echo, "0.0.0.0", int(sys.argv[1]), backlog=1024)
    print("listening", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

CLIENT = """\
import asyncio, sys, time

HOST, PORT, CONNECTIONS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
REQUEST = b"x" * 63 + b"\\n"

async def exchange(reader, writer):
    writer.write(REQUEST)
    assert await reader.readexactly(len(REQUEST)) == REQUEST

async def one_per_request():
    reader, writer = await asyncio.open_connection(HOST, PORT)
    await exchange(reader, writer)
    writer.close()
    await writer.wait_closed()

async def keep_alive(requests):
    reader, writer = await asyncio.open_connection(HOST, PORT)
    for _ in range(requests):
        await exchange(reader, writer)
    writer.close()
    await writer.wait_closed()

async def main():
    start = time.perf_counter()
    for _ in range(CONNECTIONS):
        await one_per_request()
    per_request = CONNECTIONS / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*(keep_alive(200) for _ in range(50)))
    kept = 50 * 200 / (time.perf_counter() - start)
    print(f"{per_request:.1f} {kept:.1f}", flush=True)

asyncio.run(main())
"""


def run_client(command: list[str]) -> tuple[float, float]:
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise SystemExit(f"the client failed: {out.stderr[-2000:]}")
    per_request, kept = out.stdout.split()
    return float(per_request), float(kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connections", type=int, default=1000, help="connections made one after another")
    a = p.parse_args()
    figures: dict[tuple[str, str], list[float]] = {}
    with (
        tempfile.TemporaryDirectory() as scripts,
        Lab(netns="mipfast-bench-pc", iface="mfpc", peer="mfpc-p", dhcp=False) as lab,
        KernelPair(offloads=True, tag="pc") as pair,
    ):
        (Path(scripts) / "echo.py").write_text(ECHO)
        (Path(scripts) / "client.py").write_text(CLIENT)
        servers = [
            subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, str(Path(scripts) / "echo.py"), "9300"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for netns in (lab.netns, pair.B)
        ]
        try:
            for server in servers:
                server.stdout.readline()
            client = [str(Path(scripts) / "client.py")]
            patched = [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", "10.77.0.2/24"]
            patched += [*client, lab.peer_ip, "9300", str(a.connections)]
            kernel = ["ip", "netns", "exec", pair.A, sys.executable, *client, f"{pair.net}.2", "9300"]
            kernel += [str(a.connections)]
            for r in range(a.rounds):
                for side, command in (("stack", patched), ("kernel", kernel)):
                    per_request, kept = run_client(command)
                    figures.setdefault((side, "per_request"), []).append(per_request)
                    figures.setdefault((side, "kept"), []).append(kept)
                last = {key: values[-1] for key, values in figures.items()}
                print(
                    f"round {r + 1}: a connection per request: stack {last['stack', 'per_request']:,.0f}, "
                    f"kernel {last['kernel', 'per_request']:,.0f}/s; 50 kept-alive connections: stack "
                    f"{last['stack', 'kept']:,.0f}, kernel {last['kernel', 'kept']:,.0f} requests/s",
                    flush=True,
                )
        finally:
            for server in servers:
                server.kill()
                server.wait()
    for what, name in (("per_request", "a connection per request"), ("kept", "50 kept-alive connections")):
        stack, kernel = (statistics.median(figures[side, what]) for side in ("stack", "kernel"))
        print(
            f"asyncio client, {name}, medians of {a.rounds}: stack (patched) {stack:,.0f}/s, "
            f"kernel {kernel:,.0f}/s, ratio {stack / kernel:.2f}x"
        )


if __name__ == "__main__":
    main()
