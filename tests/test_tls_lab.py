"""Blocking TLS over stack connections with the stdlib's ssl, the Linux kernel as the peer."""

from __future__ import annotations

import hashlib
import ssl
import threading

import pytest
from conftest import PEER_PY, STACK_IP
from peer import pattern

import mipfast


def test_client_verifies_the_kernel_server_and_rejects_a_wrong_name(lab, peer, stack, certs):
    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "tls", "echo", "9300", chain, key)
    with stack.connect(
        (lab.peer_ip, 9300), timeout=10, ssl=certs.client_context(), server_hostname="peer.test"
    ) as tls:
        assert isinstance(tls, mipfast.TlsConnection)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert()["subjectAltName"] == (("DNS", "peer.test"),)
        assert tls.cipher() is not None
        tls.sendall(b"hello over tls")
        assert tls.recv(100) == b"hello over tls"
        f = tls.makefile("rwb")
        f.write(b"line\n")
        f.flush()
        assert f.readline() == b"line\n"
        f.close()
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        stack.connect(
            (lab.peer_ip, 9300), timeout=10, ssl=certs.client_context(), server_hostname="wrong.test"
        )
    conn = stack.connect((lab.peer_ip, 9300), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.wrap_tls(ssl.create_default_context(), server_hostname="peer.test")  # an unknown CA


def test_alpn_is_negotiated(lab, stack, certs):
    listener = stack.listen(9301, ssl=None)
    server_ctx = certs.server_context()
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    result = {}

    def serve() -> None:
        conn, _ = listener.accept(10)
        tls = conn.wrap_tls(server_ctx, server_side=True)
        result["server"] = tls.selected_alpn_protocol()
        tls.close()

    t = threading.Thread(target=serve)
    t.start()
    client = lab.run(
        "sh",
        "-c",
        f"echo | openssl s_client -alpn http/1.1 -CAfile {certs.ca_file} -servername stack.test"
        f" {STACK_IP}:9301 2>&1",
        check=False,
        timeout=30,
    )
    t.join(10)
    assert "ALPN protocol: http/1.1" in client.stdout
    assert result["server"] == "http/1.1"


def test_our_tls_server_is_reached_by_curl(lab, stack, certs):
    listener = stack.listen(9302, ssl=certs.server_context())
    body = b"served over TLS by mipfast\n"

    def serve() -> None:
        tls, _ = listener.accept(20)
        request = b""
        while b"\r\n\r\n" not in request:
            request += tls.recv(4096)
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        tls.unwrap().close()

    t = threading.Thread(target=serve)
    t.start()
    r = lab.run(
        "curl",
        "-sS",
        "--cacert",
        certs.ca_file,
        "--resolve",
        f"stack.test:9302:{STACK_IP}",
        "https://stack.test:9302/",
        timeout=30,
    )
    t.join(10)
    assert r.stdout.encode() == body


def test_50_mb_over_tls_both_ways(lab, peer, stack, certs):
    chain, key = certs.files["peer.test"]
    size = 50 << 20
    data = pattern(size)
    digest = hashlib.sha256(data).hexdigest()

    peer(PEER_PY, "tls", "source", "9303", chain, key, str(size))
    with stack.connect(
        (lab.peer_ip, 9303), 30, ssl=certs.client_context(), server_hostname="peer.test"
    ) as tls:
        h, n = hashlib.sha256(), 0
        buf = bytearray(1 << 20)
        while k := tls.recv_into(buf):
            h.update(memoryview(buf)[:k])
            n += k
    assert (n, h.hexdigest()) == (size, digest)

    sink = peer(PEER_PY, "tls", "sink", "9304", chain, key, str(size))
    with stack.connect(
        (lab.peer_ip, 9304), 30, ssl=certs.client_context(), server_hostname="peer.test"
    ) as tls:
        tls.sendall(data)
        assert tls.recv(200).decode().split() == [str(size), digest]
    assert sink.result(60) == f"{size} {digest}"
