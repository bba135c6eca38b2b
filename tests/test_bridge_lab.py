"""Bridges: genuine ``socket.socket`` objects over stack connections, pumped by the
driver thread in Rust. Bytes intact both ways, end of stream passed on, resets and a
closed stack end the Python side, nothing leaks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import threading
import time

import pytest
from conftest import PEER_PY
from helpers import open_fds
from peer import pattern

import mipfast.bridge

SIZE = 20 << 20


def wait_for_no_bridges(stack, limit: float = 10) -> int:
    end = time.monotonic() + limit
    while (n := mipfast.bridge.active_bridges(stack)) and time.monotonic() < end:
        time.sleep(0.01)
    return n


def test_twenty_megabytes_each_way_and_end_of_stream(lab, peer, stack):
    sink = peer(PEER_PY, "sink", "9601")
    s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9601), timeout=5))
    s.sendall(pattern(SIZE))
    s.shutdown(2 - 1)  # SHUT_WR: the stack sends FIN once every byte is out
    n, digest = sink.result().split()
    assert int(n) == SIZE and digest == hashlib.sha256(pattern(SIZE)).hexdigest()
    assert s.recv(10) == b"", "the kernel peer's close reached us as end of stream"
    s.close()

    peer(PEER_PY, "source", "9602", str(SIZE))
    s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9602), timeout=5))
    s.settimeout(30)
    h, got = hashlib.sha256(), 0
    while chunk := s.recv(1 << 18):
        h.update(chunk)
        got += len(chunk)
    assert got == SIZE and h.hexdigest() == hashlib.sha256(pattern(SIZE)).hexdigest()
    s.close()
    assert wait_for_no_bridges(stack) == 0, "ended bridges let their connections go"


def test_a_reset_from_the_peer_ends_the_bridged_socket(lab, peer, stack):
    peer(PEER_PY, "reset", "9603")
    s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9603), timeout=5))
    s.settimeout(10)
    s.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        s.recv(10)  # as a kernel socket's first read after a reset
    assert s.recv(10) == b"", "then the end of stream"
    s.close()
    assert wait_for_no_bridges(stack) == 0

    # Through a file from makefile() and an asyncio transport as well.
    for how in ("file", "asyncio"):
        peer(PEER_PY, "reset", "9603")
        s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9603), timeout=5))
        s.settimeout(10)
        s.sendall(b"x")
        if how == "file":
            with pytest.raises(ConnectionResetError), s.makefile("rb") as f:
                f.read1(10)
        else:

            async def read_one(sock=s):
                sock.setblocking(False)
                reader, _ = await asyncio.open_connection(sock=sock)
                await reader.read(10)

            with pytest.raises(ConnectionResetError):
                asyncio.run(read_one())
        s.close()
    assert wait_for_no_bridges(stack) == 0


def test_bytes_come_before_the_bridge_reach_its_socket(lab, peer, stack):
    """What a connection received before it was bridged (a server's greeting) shows on
    the socket at once, and its end of stream too, for a program that waits on the
    descriptor: with another bridge up, the driver is not woken for the new one."""
    peer(PEER_PY, "echo", "9606")
    peer(PEER_PY, "source", "9607", "5000")
    other = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9606), timeout=5))
    conn = stack.connect((lab.peer_ip, 9607), timeout=5)
    deadline = time.monotonic() + 5
    while conn.state != "CLOSE_WAIT" and time.monotonic() < deadline:
        time.sleep(0.01)  # the greeting and the peer's FIN are in, and nothing reads them
    assert conn.state == "CLOSE_WAIT"
    s = mipfast.bridge.socket_for(conn)
    got = b""
    while True:
        assert select.select([s], [], [], 5)[0], "the descriptor shows what came"
        chunk = os.read(s.fileno(), 65536)
        if not chunk:
            break
        got += chunk
    assert got == pattern(5000)
    other.sendall(b"still there")
    assert other.recv(100) == b"still there"
    s.close()
    other.close()


def test_closing_the_stack_ends_every_bridged_socket(lab, peer):
    peer(PEER_PY, "silent", "9604")
    stack = mipfast.Stack(lab.iface, ip="10.77.0.2/24")
    stack.start()
    s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9604), timeout=5))
    s.settimeout(10)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(s.recv(10)))
    reader.start()
    time.sleep(0.2)
    stack.close()
    reader.join(10)
    assert got == [b""], "a blocked reader wakes at end of stream"
    s.close()


def test_no_descriptor_or_connection_leaks_over_2000_bridges(lab, peer, stack):
    peer(PEER_PY, "echo", "9605")
    fds = open_fds()
    for i in range(2000):
        s = mipfast.bridge.socket_for(stack.connect((lab.peer_ip, 9605), timeout=5))
        s.settimeout(10)
        s.sendall(b"%d" % i)
        assert s.recv(16) == b"%d" % i
        s.close()
    assert wait_for_no_bridges(stack) == 0
    assert open_fds() == fds, "no descriptor leaked"
