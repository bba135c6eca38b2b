"""A kernel-side HTTP(S) server for the HTTP-client tests, run in the lab namespace.

python http_peer.py PORT [CERT KEY]

GET /hello            200 "hello" (keep-alive, Content-Length)
GET /redirect         302 to /hello
GET /chunked          200, chunked, ten chunks "chunk <i>\\n"
GET /bytes/N          200, N bytes of peer.pattern(N)
GET /slow             200 after 3 s
GET /conn             the client's (ip, port): which connection served it
POST /echo            the body back
Prints "listening" once bound.
"""

from __future__ import annotations

import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from peer import pattern


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/hello":
            self.reply(b"hello")
        elif path == "/redirect":
            self.reply(b"", 302, {"Location": "/hello"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(10):
                part = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            data = memoryview(pattern(n))
            for i in range(0, n, 1 << 20):
                self.wfile.write(data[i : i + (1 << 20)])
        elif path == "/slow":
            time.sleep(3)
            self.reply(b"late")
        elif path == "/conn":
            self.reply(f"{self.client_address[0]}:{self.client_address[1]}".encode())
        elif path == "/drop":
            # A keep-alive answer, then the server closes the idle connection (as
            # servers do after their keep-alive timeout): the client must notice.
            self.reply(b"dropped")
            self.close_connection = True
        else:
            self.reply(b"not found", 404)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(self.rfile.read(n))


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    if len(sys.argv) > 3:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
