"""A TCP echo server on the stack: one thread per connection.

sudo .venv/bin/python examples/echo_server.py -i mip0 --ip 10.77.0.2/24 --port 7
then, from the peer:  nc 10.77.0.2 7
"""

from __future__ import annotations

import argparse
import threading

import mipfast


def echo(conn: mipfast.Connection) -> None:
    with conn:
        buf = bytearray(1 << 16)
        while n := conn.recv_into(buf):
            conn.sendall(memoryview(buf)[:n])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--iface", required=True)
    p.add_argument("--ip", help="static address with prefix (default: DHCP)")
    p.add_argument("--port", type=int, default=7)
    args = p.parse_args()
    with mipfast.Stack(args.iface, ip=args.ip) as stack:
        stack.wait_ready(timeout=10)
        with stack.listen(args.port) as server:
            print(f"echo on {stack.ip}:{server.port}", flush=True)
            try:
                while True:
                    conn, peer = server.accept()
                    threading.Thread(target=echo, args=(conn,), daemon=True).start()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
