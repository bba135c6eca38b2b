"""Kernel-side helpers the lab tests run inside the namespace.

python peer.py sink PORT            accept one connection, read to EOF, print "<len> <sha256>"
python peer.py source PORT N        accept one connection, send N bytes of pattern(N), close
python peer.py echo PORT            accept connections, echo each until EOF
python peer.py client HOST PORT N   connect, send pattern(N), shut down, print "<len> <sha256>" of the echo
python peer.py silent PORT          accept one connection and never read or write
Each server prints "listening" once bound.
"""

from __future__ import annotations

import hashlib
import socket
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


def main() -> None:
    mode = sys.argv[1]
    if mode == "sink":
        conn, _ = listen(int(sys.argv[2])).accept()
        n, digest = drain(conn)
        print(n, digest, flush=True)
    elif mode == "source":
        conn, _ = listen(int(sys.argv[2])).accept()
        conn.sendall(pattern(int(sys.argv[3])))
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
