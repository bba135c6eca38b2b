"""Unmodified clients through `python -m mipfast.patch` beside the same clients on kernel sockets.

The clients are the same programs on both sides. `CLIENT`: `asyncio.open_connection`, a 64-byte request, its
echo, close; first one connection after another (a connection per request), then 50 connections at once, each
making 200 requests on its own connection (keep-alive). `AIOHTTP_CLIENT`: an aiohttp session `GET`ting a
2-byte reply, one session kept alive, then with `force_close=True` (a connection per request).
`BLOCKING_CLIENT`: the 64-byte exchange on a blocking `socket.create_connection` per request, then on one kept
connection (`TCP_NODELAY`), then `requests` kept alive and with a connection per request. Once under
`python -m mipfast.patch -i <lab interface>`, once on a kernel veth pair between two namespaces (the kernel's
offloads at their defaults). The echo server and the HTTP server (a minimal asyncio responder) are the same
programs on kernel sockets in the peer's namespace. Rounds interleave the two; medians. Run as root:
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

SERVERS = """\
import asyncio, sys

REPLY = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
CLOSING = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok"

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def http(reader, writer):
    try:
        while True:
            head = (await reader.readuntil(b"\\r\\n\\r\\n")).lower()
            closing = b"connection: close" in head
            writer.write(CLOSING if closing else REPLY)
            await writer.drain()
            if closing:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    for serve, port in ((echo, sys.argv[1]), (http, sys.argv[2])):
        await asyncio.start_server(serve, "0.0.0.0", int(port), backlog=1024)
    print("listening", flush=True)
    await asyncio.Event().wait()

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
    print(f"per_request {per_request:.1f}", flush=True)
    print(f"kept {kept:.1f}", flush=True)

asyncio.run(main())
"""

AIOHTTP_CLIENT = """\
import asyncio, sys, time
import aiohttp

URL = f"http://{sys.argv[1]}:{sys.argv[2]}/"

async def requests(session, n):
    for _ in range(n):
        async with session.get(URL) as response:
            await response.read()

async def rate(session, n):
    await requests(session, n // 10)  # warm
    start = time.perf_counter()
    await requests(session, n)
    return n / (time.perf_counter() - start)

async def main():
    async with aiohttp.ClientSession() as session:
        print(f"aiohttp_kept {await rate(session, 2000):.1f}", flush=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        print(f"aiohttp_per_request {await rate(session, 500):.1f}", flush=True)

asyncio.run(main())
"""

BLOCKING_CLIENT = """\
import socket, sys, time
import requests

HOST, PORT, HTTP_PORT, CONNECTIONS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
REQUEST = b"x" * 63 + b"\\n"
URL = f"http://{HOST}:{HTTP_PORT}/"

def exchange(s):
    s.sendall(REQUEST)
    got = b""
    while len(got) < len(REQUEST):
        got += s.recv(4096)

def one_per_request():
    with socket.create_connection((HOST, PORT), timeout=5) as s:
        exchange(s)

def rate(call, n):
    for _ in range(n // 10):
        call()  # warm
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)

print(f"socket_per_request {rate(one_per_request, CONNECTIONS):.1f}", flush=True)
with socket.create_connection((HOST, PORT), timeout=5) as kept:
    kept.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(f"socket_kept {rate(lambda: exchange(kept), 5000):.1f}", flush=True)
with requests.Session() as session:
    print(f"requests_kept {rate(lambda: session.get(URL).content, 2000):.1f}", flush=True)
print(f"requests_per_request {rate(lambda: requests.get(URL).content, 500):.1f}", flush=True)
"""

ROWS = (
    ("per_request", "asyncio client, a connection per request"),
    ("kept", "asyncio client, 50 kept-alive connections"),
    ("aiohttp_kept", "aiohttp session, kept alive"),
    ("aiohttp_per_request", "aiohttp session, a connection per request"),
    ("socket_per_request", "blocking socket.create_connection, a connection per request"),
    ("socket_kept", "blocking socket, one connection, 64-byte round trips"),
    ("requests_kept", "requests session, kept alive"),
    ("requests_per_request", "requests.get, a connection per request"),
)


def run_client(command: list[str]) -> dict[str, float]:
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise SystemExit(f"the client failed: {out.stderr[-2000:]}")
    return {name: float(value) for name, value in (line.split() for line in out.stdout.splitlines())}


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
        programs = {
            "servers.py": SERVERS,
            "client.py": CLIENT,
            "aiohttp_client.py": AIOHTTP_CLIENT,
            "blocking_client.py": BLOCKING_CLIENT,
        }
        for name, text in programs.items():
            (Path(scripts) / name).write_text(text)
        serve = [sys.executable, str(Path(scripts) / "servers.py"), "9300", "9301"]
        servers = [
            subprocess.Popen(
                ["ip", "netns", "exec", netns, *serve],
                stdout=subprocess.PIPE,
                text=True,
            )
            for netns in (lab.netns, pair.B)
        ]
        try:
            for server in servers:
                server.stdout.readline()
            patch = [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", "10.77.0.2/24"]
            in_pair = ["ip", "netns", "exec", pair.A, sys.executable]
            commands = []
            runs = (
                ("client.py", "9300", str(a.connections)),
                ("aiohttp_client.py", "9301"),
                ("blocking_client.py", "9300", "9301", str(a.connections)),
            )
            for script, port, *more in runs:
                program = str(Path(scripts) / script)
                commands.append(("stack", [*patch, program, lab.peer_ip, port, *more]))
                commands.append(("kernel", [*in_pair, program, f"{pair.net}.2", port, *more]))
            for r in range(a.rounds):
                for side, command in commands:
                    for name, value in run_client(command).items():
                        figures.setdefault((side, name), []).append(value)
                last = {key: values[-1] for key, values in figures.items()}
                shown = "; ".join(
                    f"{title}: stack {last['stack', name]:,.0f}, kernel {last['kernel', name]:,.0f}/s"
                    for name, title in ROWS
                )
                print(f"round {r + 1}: {shown}", flush=True)
        finally:
            for server in servers:
                server.kill()
                server.wait()
    for what, title in ROWS:
        stack, kernel = (statistics.median(figures[side, what]) for side in ("stack", "kernel"))
        print(
            f"{title}, medians of {a.rounds}: stack (patched) {stack:,.0f}/s, "
            f"kernel {kernel:,.0f}/s, ratio {stack / kernel:.2f}x"
        )


if __name__ == "__main__":
    main()
