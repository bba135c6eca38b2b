"""Readiness descriptors: select, poll and selectors wait on stack sockets as on kernel ones."""

from __future__ import annotations

import errno
import select
import selectors
import socket
import sys
import time

import pytest
from conftest import PEER_PY, STACK_IP
from helpers import open_fds

import mipfast


def readable(sock, timeout: float = 0) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def writable(sock, timeout: float = 0) -> bool:
    return bool(select.select([], [sock], [], timeout)[1])


def test_selectors_echo_server_serves_200_kernel_clients_at_once(lab, peer, stack):
    """One thread, one selector, 200 connections of 64 KiB each, intact."""
    listener = stack.listen(9100, backlog=256)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    clients = peer(PEER_PY, "crowd", STACK_IP, "9100", "200", str(64 << 10), ready=None)
    pending: dict[mipfast.Connection, bytearray] = {}
    served = 0
    deadline = time.monotonic() + 60
    while served < 200:
        assert time.monotonic() < deadline, f"served {served} of 200"
        for key, events in sel.select(1):
            if key.fileobj is listener:
                while True:
                    try:
                        conn, _ = listener.accept(0)
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    pending[conn] = bytearray()
                    sel.register(conn, selectors.EVENT_READ, None)
                continue
            conn = key.fileobj
            out = pending[conn]
            if events & selectors.EVENT_READ:
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    sel.unregister(conn)
                    conn.close()
                    del pending[conn]
                    served += 1
                    continue
                if data:
                    out += data
            if out:
                try:
                    n = conn.send(out)
                except BlockingIOError:
                    n = 0
                del out[:n]
            sel.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0), None)
    assert clients.result(60) == "ok 200"
    sel.close()


def test_select_times_out_then_sees_data_eof_and_reset(lab, peer, stack):
    echo = peer(PEER_PY, "echo", "9101")
    conn = stack.connect((lab.peer_ip, 9101), timeout=5)
    start = time.monotonic()
    assert not readable(conn, 0.3), "nothing to read"
    assert time.monotonic() - start >= 0.25, "select waited for its timeout"
    assert writable(conn)
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    assert poller.poll(100) == []
    conn.sendall(b"ping")
    assert readable(conn, 5)
    assert conn.recv(10) == b"ping"
    assert not readable(conn), "drained: no longer readable (level-triggered)"
    conn.shutdown(socket.SHUT_WR)
    assert readable(conn, 5), "end of stream is readable"
    assert conn.recv(10) == b""
    conn.close()
    echo.stop()

    silent = peer(PEER_PY, "silent", "9102")
    conn = stack.connect((lab.peer_ip, 9102), timeout=5)
    conn.sendall(b"never read")
    assert not readable(conn, 0.2)
    silent.stop()  # the kernel resets a connection closed with data unread
    assert readable(conn, 5), "a reset is readable"
    with pytest.raises(ConnectionResetError):
        conn.recv(10)
    conn.close()


def test_a_full_send_buffer_is_not_writable_until_the_peer_reads(lab, peer, stack):
    silent = peer(PEER_PY, "silent", "9103")
    conn = stack.connect((lab.peer_ip, 9103), timeout=5)
    conn.setblocking(False)
    sent = 0
    with pytest.raises(BlockingIOError):
        while True:
            sent += conn.send(b"x" * 65536)
    assert sent > 0
    assert not writable(conn, 0.3), "no room: not writable"
    conn.abort()
    silent.stop()


def test_listener_and_udp_descriptors(lab, stack):
    listener = stack.listen(0)
    assert not readable(listener, 0.1)
    r = lab.run(
        sys.executable,
        "-c",
        f"import socket; socket.create_connection(('{STACK_IP}', {listener.port}), timeout=5).close()",
    )
    assert r.returncode == 0
    assert readable(listener, 5), "a connection waiting for accept() is readable"
    conn, _ = listener.accept(0)
    conn.close()
    listener.close()

    sock = stack.udp()
    assert not readable(sock, 0.1) and writable(sock)
    port = sock.getsockname()[1]
    lab.run(sys.executable, "-c", f"import socket; socket.socket(2, 2).sendto(b'hi', ('{STACK_IP}', {port}))")
    assert readable(sock, 5)
    assert sock.recvfrom(10)[0] == b"hi"
    assert not readable(sock)
    sock.close()


def fd_count() -> int:
    return open_fds()


def test_misuse_closed_descriptors_and_no_leak_over_10000_cycles(lab, peer, stack):
    echo = peer(PEER_PY, "echo", "9104")
    conn = stack.connect((lab.peer_ip, 9104), timeout=5)
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ)
    conn.close()  # closed while the selector holds it
    assert conn.fileno() == -1, "as a closed socket.socket"
    assert sel.select(0.1) == [], "a closed descriptor wakes nobody"
    sel.unregister(conn)
    sel.close()

    before = fd_count()
    for _ in range(10_000):
        c = stack.connect((lab.peer_ip, 9104), timeout=5)
        assert c.fileno() >= 0
        c.close()
    assert fd_count() == before, "every descriptor was released"
    echo.stop()


def test_stack_closed_under_a_selector_wakes_it(lab, peer):
    echo = peer(PEER_PY, "echo", "9105")
    s = mipfast.Stack(lab.iface, ip="10.77.0.2/24")
    s.start()
    conn = s.connect((lab.peer_ip, 9105), timeout=5)
    sel = selectors.DefaultSelector()
    sel.register(conn.fileno(), selectors.EVENT_READ)
    s.close()
    assert sel.select(2), "closing the stack wakes a waiter"
    with pytest.raises(OSError) as e:
        conn.recv(10)
    assert e.value.errno == errno.EBADF
    sel.close()
    echo.stop()
