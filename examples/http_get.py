"""Plain HTTP/1.1 GET through the stack, with the stdlib's http.client.

sudo .venv/bin/python examples/http_get.py -i mip0 http://10.77.0.1:8080/         # DHCP
sudo .venv/bin/python examples/http_get.py -i mip0 --ip 10.77.0.2/24 --sha256 http://10.77.0.1:8080/big
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import sys
import urllib.parse

import mipfast


class StackHTTPConnection(http.client.HTTPConnection):
    """http.client over a mipfast connection instead of a kernel socket."""

    def __init__(self, stack: mipfast.Stack, host: str, port: int = 80, timeout: float = 10) -> None:
        super().__init__(host, port, timeout=timeout)
        self._stack = stack

    def connect(self) -> None:
        self.sock = self._stack.connect((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(6, 1, 1)  # TCP_NODELAY, as http.client does


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--iface", required=True)
    p.add_argument("--ip", help="static address with prefix (default: DHCP)")
    p.add_argument("--sha256", action="store_true", help="print the body's length and SHA-256, not the body")
    p.add_argument("url")
    args = p.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        p.error("only http://host[:port]/path URLs")
    with mipfast.Stack(args.iface, ip=args.ip) as stack:
        stack.wait_ready(timeout=10)
        conn = StackHTTPConnection(stack, url.hostname, url.port or 80)
        conn.request("GET", url.path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        print(f"HTTP {response.status} {response.reason}", file=sys.stderr)
        digest, length = hashlib.sha256(), 0
        while chunk := response.read(1 << 16):
            length += len(chunk)
            if args.sha256:
                digest.update(chunk)
            else:
                sys.stdout.buffer.write(chunk)
        conn.close()
        if args.sha256:
            print(f"{length} {digest.hexdigest()}")
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
