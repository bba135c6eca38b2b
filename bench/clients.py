"""TLS and the HTTP clients people use, through the stack beside the same code on kernel sockets:

* TLS bulk: one connection reading 200 MB from a kernel TLS source (stdlib ``ssl``), blocking
  (``stack.connect(..., ssl=ctx)`` against ``ctx.wrap_socket``) and asyncio
  (``mipfast.asyncio.open_connection(..., ssl=ctx)`` against ``asyncio.open_connection``);
* ``requests`` and ``httpx`` requests per second on one keep-alive connection against a tiny
  handler (``mipfast.http.requests.session`` / ``mipfast.http.httpx.client`` against a plain
  ``requests.Session`` / ``httpx.Client``).

Servers are kernel Python programs in a namespace; the kernel reference runs the client in a second
namespace over an identical veth pair, offloads off (tcp_bulk.py's KernelPair). Needs the test
extras (trustme for the certificates). Run as root: `sudo .venv/bin/python bench/clients.py`.
Medians of interleaved rounds; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asyncio_echo import bulk as bulk_async  # noqa: E402  (the same reading loop, over TLS here)
from tcp_bulk import KernelPair, ns_python  # noqa: E402

SERVER = """
import http.server, socket, ssl, sys, threading
cert, key, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Tiny(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

def tls_source():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("0.0.0.0", 9611), backlog=16)
    block = bytes(1 << 20)
    def serve(c):
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                for _ in range(mb):
                    t.sendall(block)
        except OSError:
            pass
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

threading.Thread(target=tls_source, daemon=True).start()
http.server.ThreadingHTTPServer.allow_reuse_address = True
server = http.server.ThreadingHTTPServer(("0.0.0.0", 9610), Tiny)
print("listening", flush=True)
server.serve_forever()
"""

BULK_MB = 200
SECONDS = 2.0
NAME = "peer.test"


def tls_bulk(open_tls: Callable[[], Any]) -> float:
    """The measured code: read everything a TLS source sends, blocking."""
    s = open_tls()
    n = 0
    start = time.perf_counter()
    while chunk := s.recv(1 << 20):
        n += len(chunk)
    elapsed = time.perf_counter() - start
    s.close()
    return n * 8 / elapsed / 1e9


def requests_per_second(get: Callable[[str], Any], url: str) -> float:
    """The measured code: GET in a loop on one keep-alive connection."""
    get(url)  # connect outside the measurement
    count = 0
    start = time.perf_counter()
    end = start + SECONDS
    while time.perf_counter() < end:
        r = get(url)
        assert r.status_code == 200
        count += 1
    return count / (time.perf_counter() - start)


def measure(host: str, ca: str, stack: Any = None) -> dict[str, float]:
    import httpx
    import requests

    ctx = ssl.create_default_context(cafile=ca)
    url = f"http://{host}:9610/"
    if stack is None:
        import socket

        def open_tls() -> Any:
            return ctx.wrap_socket(socket.create_connection((host, 9611)), server_hostname=NAME)

        def open_async() -> Any:
            return asyncio.open_connection(host, 9611, ssl=ctx, server_hostname=NAME)

        session: Any = requests.Session()
        client: Any = httpx.Client(trust_env=False)
    else:
        import mipfast.asyncio as maio
        import mipfast.http.httpx
        import mipfast.http.requests

        def open_tls() -> Any:
            return stack.connect((host, 9611), ssl=ctx, server_hostname=NAME)

        def open_async() -> Any:
            return maio.open_connection(stack, host, 9611, ssl=ctx, server_hostname=NAME)

        session = mipfast.http.requests.session(stack)
        client = mipfast.http.httpx.client(stack)
    out = {
        "tls_bulk": tls_bulk(open_tls),
        "tls_bulk_asyncio": asyncio.run(bulk_async(lambda _port: open_async())),
        "requests": requests_per_second(session.get, url),
        "httpx": requests_per_second(client.get, url),
    }
    session.close()
    client.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--client-kernel", nargs=2, help=argparse.SUPPRESS)  # internal: host, CA file
    a = p.parse_args()
    if a.client_kernel:
        print(json.dumps(measure(*a.client_kernel)))
        return

    import trustme

    import mipfast
    from mipfast._lab import Lab

    tmp = Path(tempfile.mkdtemp(prefix="mipfast-bench-"))
    ca = trustme.CA()
    leaf = ca.issue_cert(NAME)
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    for extra in leaf.cert_chain_pems[1:]:
        extra.write_to_path(str(tmp / "cert.pem"), append=True)
    files = (str(tmp / "cert.pem"), str(tmp / "key.pem"), str(BULK_MB))

    results: dict[str, list[dict[str, float]]] = {"kernel": [], "stack": []}
    with Lab(netns="mipfast-bench", iface="mfbs0", peer="mfbs1", dhcp=False) as lab, KernelPair() as pair:
        servers = [ns_python(lab.netns, SERVER, *files), ns_python(pair.B, SERVER, *files)]
        for s in servers:
            s.stdout.readline()
        with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
            for _ in range(a.rounds):
                r = subprocess.run(
                    ["ip", "netns", "exec", pair.A, sys.executable, __file__,
                     "--client-kernel", "10.78.0.2", str(tmp / "ca.pem")],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                results["kernel"].append(json.loads(r.stdout))
                results["stack"].append(measure(lab.peer_ip, str(tmp / "ca.pem"), stack))
        for s in servers:
            s.kill()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    units = {
        "tls_bulk": "Gbit/s TLS receive, blocking",
        "tls_bulk_asyncio": "Gbit/s TLS receive, asyncio",
        "requests": "requests/s, requests keep-alive",
        "httpx": "requests/s, httpx keep-alive",
    }
    for metric, unit in units.items():
        k, ours = med["kernel"][metric], med["stack"][metric]
        print(f"{unit:34} kernel {k:10.2f}  stack {ours:10.2f} ({ours / k:.2f}x)")


if __name__ == "__main__":
    main()
