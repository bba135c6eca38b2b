"""The drop-in: unmodified client programs and server programs through the stack."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import PEER_PY, STACK_CIDR, STACK_IP, Peer
from helpers import linux_lab
from peer import pattern

import mipfast.bridge
from mipfast.patch import patched

HTTP_PEER = str(Path(__file__).resolve().parent / "http_peer.py")

CLIENT = """\
import sys
import requests
r = requests.get(sys.argv[1], timeout=10)
print(r.status_code, r.text)
"""


@linux_lab  # peer.test by dnsmasq
def test_an_unmodified_requests_script_runs_through_the_stack(lab, certs, tmp_path):
    chain, key = certs.files["peer.test"]
    plain = Peer(lab, HTTP_PEER, "9480")
    tls = Peer(lab, HTTP_PEER, "9481", chain, key)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    try:
        for url in ("http://peer.test:9480/conn", "https://peer.test:9481/conn"):
            r = subprocess.run(
                [sys.executable, "-m", "mipfast.patch", "-i", lab.iface, "--ip", STACK_CIDR]
                + ["--dns", lab.peer_ip, str(script), url],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "REQUESTS_CA_BUNDLE": certs.ca_file},
            )
            assert r.returncode == 0, r.stderr
            status, client = r.stdout.split()
            assert status == "200"
            assert client.startswith(f"{STACK_IP}:"), "the kernel server saw the stack's address"
    finally:
        plain.stop()
        tls.stop()


def test_patched_sockets_in_process(lab, peer, stack):
    peer(PEER_PY, "echo", "9482")
    import socket

    with patched(stack):
        s = socket.create_connection((lab.peer_ip, 9482), timeout=10)
        assert isinstance(s, socket.socket) and s.family == socket.AF_INET
        assert s.getsockname()[0] == STACK_IP and s.getpeername() == (lab.peer_ip, 9482)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = pattern(1 << 20)
        threading.Thread(target=s.sendall, args=(data,)).start()
        got = bytearray()
        while len(got) < len(data):
            got += s.recv(1 << 16)
        assert got == data
        s.close()
        local = socket.socket()  # loopback is not routed
        assert local.connect_ex(("127.0.0.1", 9)) != 0
        local.close()
    assert socket.socket is not type(s), "the patch is undone"


def test_socketserver_http_server_served_through_the_stack(lab, stack, tmp_path):
    (tmp_path / "index.html").write_text("served by http.server through mipfast\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("", 0), Quiet, bind_and_activate=False)
    server.socket = mipfast.bridge.server_socket(stack, 8080)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        for _ in range(3):
            r = lab.run("curl", "-sS", "--max-time", "10", f"http://{STACK_IP}:8080/index.html", timeout=30)
            assert r.stdout == "served by http.server through mipfast\n"
    finally:
        server.shutdown()
        server.server_close()


ASGI_APP = """\
async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = f"asgi says hi to {scope['client'][0]}\\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def test_an_unmodified_uvicorn_app_is_forwarded_through_the_stack(lab, stack, tmp_path):
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    uvicorn = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "--host", "127.0.0.1"]
        + ["--port", "18431", "--log-level", "warning", "asgi_app:app"],
        stdin=subprocess.DEVNULL,
    )
    try:
        import socket

        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", 18431), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        with mipfast.bridge.forward(stack, 8000, ("127.0.0.1", 18431)):
            r = lab.run("curl", "-sS", "--max-time", "10", f"http://{STACK_IP}:8000/", timeout=30)
            assert r.stdout == "asgi says hi to 127.0.0.1\n"
    finally:
        uvicorn.terminate()
        uvicorn.wait(10)
