"""A small HTTP/1.1 server written on mipfast: downloads and uploads.

sudo .venv/bin/python examples/http_server.py -i mip0 --ip 10.77.0.2/24 --port 8000
then, from the peer:
  curl http://10.77.0.2:8000/bytes/1000000 | sha256sum     # a deterministic body of that size
  curl -T file http://10.77.0.2:8000/upload                 # answers "<length> <sha256>"
"""

from __future__ import annotations

import argparse
import hashlib
import threading
from typing import BinaryIO

import mipfast

CHUNK = 1 << 16


def pattern(size: int) -> bytes:
    """The body of /bytes/N: a repeating 251-byte cycle (prime, so chunk edges never align)."""
    cycle = bytes(range(251))
    return (cycle * (size // 251 + 1))[:size]


def read_head(f: BinaryIO) -> tuple[str, str, dict[str, str]] | None:
    line = f.readline(8192).decode("latin-1").strip()
    if not line:
        return None
    method, target, _ = line.split(" ", 2)
    headers = {}
    while (h := f.readline(8192).decode("latin-1").strip()) != "":
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def respond(conn: mipfast.Connection, status: str, body: bytes, close: bool) -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
    head += "Connection: close\r\n\r\n" if close else "\r\n"
    conn.sendall(head.encode() + body)


def serve(conn: mipfast.Connection) -> None:
    with conn, conn.makefile("rb") as f:
        while request := read_head(f):
            method, target, headers = request
            close = headers.get("connection", "").lower() == "close"
            if method == "GET" and target.startswith("/bytes/"):
                size = int(target.rsplit("/", 1)[1])
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n"
                conn.sendall(head.encode())
                block = pattern(251 * 4096)  # whole cycles, so blocks join seamlessly
                while size > 0:
                    n = min(size, len(block))
                    conn.sendall(memoryview(block)[:n])
                    size -= n
            elif method in ("PUT", "POST"):
                if headers.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                length = int(headers.get("content-length", "0"))
                digest, left = hashlib.sha256(), length
                while left > 0:
                    chunk = f.read(min(left, CHUNK))
                    if not chunk:
                        return
                    digest.update(chunk)
                    left -= len(chunk)
                respond(conn, "200 OK", f"{length} {digest.hexdigest()}\n".encode(), close)
            else:
                respond(conn, "404 Not Found", b"try /bytes/N or PUT /upload\n", close)
            if close:
                break


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--iface", required=True)
    p.add_argument("--ip", help="static address with prefix (default: DHCP)")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    with mipfast.Stack(args.iface, ip=args.ip) as stack:
        stack.wait_ready(timeout=10)
        with stack.listen(args.port) as server:
            print(f"serving on {stack.ip}:{server.port}", flush=True)
            try:
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=serve, args=(conn,), daemon=True).start()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
