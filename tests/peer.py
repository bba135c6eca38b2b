"""Kernel-side helpers the lab tests run inside the namespace.

python peer.py sink PORT            accept one connection, read to EOF, print "<len> <sha256>"
python peer.py source PORT N        accept one connection, send N bytes of pattern(N), close
python peer.py echo PORT            accept connections, echo each until EOF
python peer.py client HOST PORT N   connect, send pattern(N), shut down, print "<len> <sha256>" of the echo
python peer.py silent PORT          accept one connection and never read or write
python peer.py crowd HOST PORT N SIZE   N clients at once, each sends SIZE bytes and checks the echo;
                                    prints "ok N"
python peer.py tls MODE PORT CERT KEY [N]   a TLS server: MODE echo, source or sink (N bytes)
python peer.py starttls PORT CERT KEY      plain until "STARTTLS\n" (answered "OK\n"), then TLS echo
Each server prints "listening" once bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import socket
import ssl
import struct
import sys
import threading
import time


def pattern(n: int) -> bytes:
    """Deterministic, non-repeating bytes: SHA-256 in counter mode."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "big")).digest() * 64
        i += 1
    return bytes(out[:n])


def listen(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    print("listening", flush=True)
    return s


def drain(conn: socket.socket) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    while chunk := conn.recv(1 << 20):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


async def crowd(host: str, port: int, n: int, size: int) -> int:
    """N clients at once; each sends its own bytes and reads the same back."""

    async def one(i: int) -> bool:
        data = i.to_bytes(4, "big") * (size // 4)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(data)
        await writer.drain()
        got = await reader.readexactly(len(data))
        writer.close()
        await writer.wait_closed()
        return got == data

    results = await asyncio.gather(*(one(i) for i in range(n)))
    return sum(results)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def echo_until_eof(c: socket.socket) -> None:
    with c:
        while data := c.recv(1 << 16):
            c.sendall(data)


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode = sys.argv[1]
    if mode == "sink":
        conn, _ = listen(int(sys.argv[2])).accept()
        n, digest = drain(conn)
        print(n, digest, flush=True)
    elif mode == "endings":  # how each of `count` connections ended: "eof N" or "reset N" (N bytes read)
        server = listen(int(sys.argv[2]))
        for _ in range(int(sys.argv[3])):
            conn, _ = server.accept()
            n, how = 0, "eof"
            with conn:
                try:
                    while data := conn.recv(1 << 16):
                        n += len(data)
                except ConnectionResetError:
                    how = "reset"
            print(how, n, flush=True)
    elif mode == "source":
        conn, _ = listen(int(sys.argv[2])).accept()
        conn.sendall(pattern(int(sys.argv[3])))
        conn.close()
    elif mode == "reset":  # reads one byte, then closes with a reset
        conn, _ = listen(int(sys.argv[2])).accept()
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    elif mode == "silent":
        conn, _ = listen(int(sys.argv[2])).accept()
        time.sleep(3600)
    elif mode == "echo":
        server = listen(int(sys.argv[2]))

        def echo(c: socket.socket) -> None:
            with c:
                while data := c.recv(1 << 16):
                    c.sendall(data)

        while True:
            c, _ = server.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    elif mode == "greet":  # a line to each connection, then closes first: TIME-WAIT stays here
        server = listen(int(sys.argv[2]))
        while True:
            c, _ = server.accept()
            c.sendall(b"hello\n")
            c.close()
    elif mode == "udp-echo":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(sys.argv[2])))
        print("listening", flush=True)
        while True:
            data, source = s.recvfrom(65535)
            s.sendto(data, source)
    elif mode == "crowd":
        host, port, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print("ok", asyncio.run(crowd(host, port, n, size)), flush=True)
    elif mode == "tls":
        kind, port, cert, key = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        ctx = tls_context(cert, key)
        server = listen(port)
        while True:
            raw, _ = server.accept()
            try:
                c = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print("handshake failed", e, flush=True)
                continue
            if kind == "echo":
                threading.Thread(target=echo_until_eof, args=(c,), daemon=True).start()
            elif kind == "source":
                with c:
                    c.sendall(pattern(int(sys.argv[6])))
                    c.unwrap()
                return
            else:
                # TLS has no half-close: the sink knows how much comes.
                want, got, h = int(sys.argv[6]), 0, hashlib.sha256()
                with c:
                    while got < want and (chunk := c.recv(1 << 20)):
                        h.update(chunk)
                        got += len(chunk)
                    c.sendall(f"{got} {h.hexdigest()}\n".encode())
                print(got, h.hexdigest(), flush=True)
                return
    elif mode == "starttls":
        port, cert, key = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        server = listen(port)
        raw, _ = server.accept()
        line = raw.recv(100)
        assert line == b"STARTTLS\n", line
        raw.sendall(b"OK\n")
        echo_until_eof(tls_context(cert, key).wrap_socket(raw, server_side=True))
    elif mode == "client":
        host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        conn = socket.create_connection((host, port), timeout=30)
        data = pattern(n)
        sender = threading.Thread(target=lambda: (conn.sendall(data), conn.shutdown(socket.SHUT_WR)))
        sender.start()
        got, digest = drain(conn)
        sender.join()
        print(got, digest, flush=True)


if __name__ == "__main__":
    main()
