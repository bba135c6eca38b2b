"""The HTTP clients people use, unmodified, over the stack: http.client, urllib3, requests, httpx
(sync and async), against a kernel HTTP and HTTPS server in the namespace."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import socket
import time
from pathlib import Path

import httpx
import pytest
import requests
import urllib3
from conftest import Peer
from helpers import linux_lab
from peer import pattern

import mipfast.http.httpx as mhttpx
import mipfast.http.requests as mrequests
import mipfast.http.urllib3 as murllib3
from mipfast.http.client import HTTPConnection, HTTPSConnection

HTTP_PEER = str(Path(__file__).resolve().parent / "http_peer.py")
BIG = 50 << 20
BIG_SHA = hashlib.sha256(pattern(BIG)).hexdigest()
REFUSED_PORT = 9399


#: The HTTPS servers are reached as peer.test, a name the Linux lab's dnsmasq serves.
HTTPS = pytest.param("https", marks=linux_lab)


@pytest.fixture(scope="module")
def servers(lab, certs):
    """http://10.77.0.1:9380 and https://peer.test:9381 (dnsmasq resolves peer.test to the peer)."""
    chain, key = certs.files["peer.test"]
    plain = Peer(lab, HTTP_PEER, "9380")
    tls = Peer(lab, HTTP_PEER, "9381", chain, key)
    yield {"http": f"http://{lab.peer_ip}:9380", "https": "https://peer.test:9381"}
    plain.stop()
    tls.stop()


@pytest.fixture
def dns_stack(lab):
    """A stack with DNS pointing at the lab's dnsmasq, which knows peer.test."""
    import mipfast

    with mipfast.Stack(lab.iface, ip="10.77.0.2/24", dns=lab.peer_ip) as s:
        yield s


@linux_lab
def test_peer_test_resolves(dns_stack, lab):
    assert dns_stack.resolve("peer.test", timeout=5) == [lab.peer_ip]


@pytest.mark.parametrize("scheme", ["http", HTTPS])
def test_requests(dns_stack, servers, certs, scheme):
    base = servers[scheme]
    with mrequests.session(dns_stack) as s:
        s.verify = certs.ca_file
        r = s.get(f"{base}/redirect", timeout=10)
        assert r.status_code == 200 and r.text == "hello" and r.history[0].status_code == 302
        r = s.get(f"{base}/chunked", timeout=10)
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.text == "".join(f"chunk {i}\n" for i in range(10))
        r = s.get(f"{base}/bytes/{BIG}", timeout=60)
        assert hashlib.sha256(r.content).hexdigest() == BIG_SHA
        first = s.get(f"{base}/conn", timeout=10).text
        assert s.get(f"{base}/conn", timeout=10).text == first, "keep-alive: the same connection"
        # The server closes a kept-alive connection: the pool sees it and connects again.
        assert s.get(f"{base}/drop", timeout=10).text == "dropped"
        time.sleep(0.3)
        assert s.get(f"{base}/conn", timeout=10).text != first, "a new connection"
        assert s.post(f"{base}/echo", data=b"x" * 100_000, timeout=10).content == b"x" * 100_000
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(f"{base}/slow", timeout=(5, 0.5))
        with pytest.raises(requests.exceptions.ConnectionError):
            s.get(f"{scheme}://10.77.0.1:{REFUSED_PORT}/", timeout=5)
        if scheme == "https":
            s.verify = True  # the system's CAs do not know the test CA
            with pytest.raises(requests.exceptions.SSLError):
                s.get(f"{base}/hello", timeout=10)


@pytest.mark.parametrize("scheme", ["http", HTTPS])
def test_urllib3(dns_stack, servers, certs, scheme):
    base = servers[scheme]
    pool = murllib3.pool_manager(dns_stack, ca_certs=certs.ca_file)
    r = pool.request("GET", f"{base}/redirect")
    assert r.status == 200 and r.data == b"hello"
    r = pool.request("GET", f"{base}/chunked")
    assert r.data.count(b"chunk") == 10
    r = pool.request("GET", f"{base}/bytes/{BIG}", preload_content=False)
    h = hashlib.sha256()
    for chunk in r.stream(1 << 20):
        h.update(chunk)
    r.release_conn()
    assert h.hexdigest() == BIG_SHA
    # A kept-alive connection the server closed is seen and replaced, no retry needed.
    first = pool.request("GET", f"{base}/conn", retries=0).data
    assert pool.request("GET", f"{base}/drop", retries=0).data == b"dropped"
    time.sleep(0.3)
    assert pool.request("GET", f"{base}/conn", retries=0).data != first
    with pytest.raises(urllib3.exceptions.MaxRetryError) as e:
        pool.request("GET", f"{base}/slow", timeout=urllib3.Timeout(connect=5, read=0.5), retries=0)
    assert isinstance(e.value.reason, urllib3.exceptions.ReadTimeoutError)
    with pytest.raises(urllib3.exceptions.MaxRetryError) as e:
        pool.request("GET", f"http://10.77.0.1:{REFUSED_PORT}/", retries=0)
    assert isinstance(e.value.reason, urllib3.exceptions.NewConnectionError)
    pool.clear()


@pytest.mark.parametrize("scheme", ["http", HTTPS])
def test_httpx_sync(dns_stack, servers, certs, scheme):
    base = servers[scheme]
    with mhttpx.client(dns_stack, verify=certs.client_context(), follow_redirects=True) as c:
        r = c.get(f"{base}/redirect")
        assert r.status_code == 200 and r.text == "hello" and len(r.history) == 1
        assert c.get(f"{base}/chunked").text.count("chunk") == 10
        h = hashlib.sha256()
        with c.stream("GET", f"{base}/bytes/{BIG}", timeout=60) as r:
            for chunk in r.iter_bytes():
                h.update(chunk)
        assert h.hexdigest() == BIG_SHA
        first = c.get(f"{base}/conn").text
        assert c.get(f"{base}/conn").text == first, "keep-alive"
        # The server closes a kept-alive connection: the pool sees it and connects again.
        assert c.get(f"{base}/drop").text == "dropped"
        time.sleep(0.3)
        assert c.get(f"{base}/conn").text != first, "a new connection"
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"{base}/slow", timeout=httpx.Timeout(5, read=0.5))
        with pytest.raises(httpx.ConnectError):
            c.get(f"http://10.77.0.1:{REFUSED_PORT}/")
    if scheme == "https":
        with (
            mhttpx.client(dns_stack) as c,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            c.get(f"{base}/hello")


@pytest.mark.parametrize("scheme", ["http", HTTPS])
def test_httpx_async(dns_stack, servers, certs, scheme):
    base = servers[scheme]

    async def main() -> None:
        async with mhttpx.async_client(dns_stack, verify=certs.client_context(), follow_redirects=True) as c:
            r = await c.get(f"{base}/redirect")
            assert r.status_code == 200 and r.text == "hello"
            assert (await c.get(f"{base}/chunked")).text.count("chunk") == 10
            h = hashlib.sha256()
            async with c.stream("GET", f"{base}/bytes/{BIG}", timeout=60) as r:
                async for chunk in r.aiter_bytes():
                    h.update(chunk)
            assert h.hexdigest() == BIG_SHA
            results = await asyncio.gather(*(c.get(f"{base}/hello") for _ in range(20)))
            assert all(r.text == "hello" for r in results)
            # A kept-alive connection the server closed is seen and replaced.
            for _ in range(3):
                assert (await c.get(f"{base}/drop")).text == "dropped"
                await asyncio.sleep(0.3)
            with pytest.raises(httpx.ReadTimeout):
                await c.get(f"{base}/slow", timeout=httpx.Timeout(5, read=0.5))
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://10.77.0.1:{REFUSED_PORT}/")

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["http", HTTPS])
def test_http_client(dns_stack, servers, certs, scheme):
    host, port = ("10.77.0.1", 9380) if scheme == "http" else ("peer.test", 9381)
    if scheme == "http":
        conn = HTTPConnection(dns_stack, host, port, timeout=10)
    else:
        conn = HTTPSConnection(dns_stack, host, port, timeout=10, context=certs.client_context())
    conn.request("GET", "/chunked")
    r = conn.getresponse()
    assert r.status == 200 and r.read().count(b"chunk") == 10
    conn.request("GET", f"/bytes/{BIG}")
    r = conn.getresponse()
    h = hashlib.sha256()
    while chunk := r.read(1 << 20):
        h.update(chunk)
    assert h.hexdigest() == BIG_SHA
    conn.request("GET", "/redirect")
    r = conn.getresponse()
    r.read()
    assert (r.status, r.getheader("Location")) == (302, "/hello")
    conn.sock.settimeout(0.5)
    conn.request("GET", "/slow")
    with pytest.raises(socket.timeout):
        conn.getresponse()
    conn.close()
    refused = HTTPConnection(dns_stack, "10.77.0.1", REFUSED_PORT, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        refused.request("GET", "/")
    if scheme == "https":
        bad = HTTPSConnection(dns_stack, host, port, timeout=10)
        with pytest.raises(http.client.ssl.SSLCertVerificationError):
            bad.request("GET", "/hello")
