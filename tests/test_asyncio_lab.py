"""mipfast.asyncio with the Linux kernel as the peer: streams, servers, TLS, cancellation."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import socket
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from conftest import PEER_PY, STACK_CIDR, STACK_IP
from helpers import open_fds, ping_cmd
from peer import pattern

import mipfast
import mipfast.asyncio as maio


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_asyncio_echo_server_with_1000_concurrent_kernel_clients(lab, peer, stack):
    async def main() -> str:
        server = await maio.start_server(echo_handler, stack, 9200, backlog=1024)
        assert isinstance(server, asyncio.Server) and server.is_serving()
        crowd = await asyncio.create_subprocess_exec(
            *lab.ns(sys.executable, PEER_PY, "crowd", STACK_IP, "9200", "1000", "4096"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(crowd.communicate(), 120)
        server.close()
        await server.wait_closed()
        return out.decode().strip()

    assert asyncio.run(main()) == "ok 1000"


def test_asyncio_client_downloads_50_mb_intact(lab, peer, stack):
    size = 50 << 20
    peer(PEER_PY, "source", "9201", str(size))

    async def main() -> tuple[int, str]:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9201)
        assert writer.get_extra_info("peername") == (lab.peer_ip, 9201)
        assert writer.get_extra_info("sockname")[0] == STACK_IP
        assert isinstance(writer.get_extra_info("socket"), mipfast.Connection)
        h, n = hashlib.sha256(), 0
        while chunk := await reader.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        writer.close()
        await writer.wait_closed()
        return n, h.hexdigest()

    assert asyncio.run(main()) == (size, hashlib.sha256(pattern(size)).hexdigest())


def test_cancelled_read_and_wait_for_timeout_leave_the_stream_usable(lab, peer, stack):
    peer(PEER_PY, "echo", "9202")

    async def main() -> None:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9202)
        task = asyncio.create_task(reader.read(100))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.3)
        assert time.monotonic() - start >= 0.25
        writer.write(b"still here")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"", "the echo ends after our EOF"
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())


def test_refused_and_timed_out_connections(lab, stack):
    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await maio.open_connection(stack, lab.peer_ip, 9)
        with pytest.raises((socket.timeout, asyncio.TimeoutError)):
            # Nothing answers at .77: the ARP request goes unanswered.
            await maio.open_connection(stack, "10.77.0.77", 80, timeout=0.5)

    asyncio.run(main())


def test_a_cancelled_connect_leaves_no_half_open_connection_and_no_thread(lab, peer, stack):
    peer(PEER_PY, "echo", "9209")

    async def main() -> None:
        before = threading.active_count()
        # Nothing answers at .77: the handshake waits for ARP and SYN retries.
        task = asyncio.ensure_future(maio.open_connection(stack, "10.77.0.77", 80))
        await asyncio.sleep(0.3)
        assert stack.tcp_info["active"] == 1, "the handshake is in progress"
        assert threading.active_count() == before, "connecting takes no thread"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stack.tcp_info["active"] == 0, "the half-open connection was aborted"
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9209)
        assert writer.get_extra_info("peername") == (lab.peer_ip, 9209)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()

    asyncio.run(main())


def test_start_tls_upgrades_a_plain_connection(lab, peer, stack, certs):
    """A stream upgraded in place (``StreamWriter.start_tls`` from 3.11, ``loop.start_tls`` before)."""
    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "starttls", "9203", chain, key)

    async def main() -> None:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9203)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        writer = await maio.start_tls(reader, writer, certs.client_context(), server_hostname="peer.test")
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object is not None and ssl_object.version().startswith("TLS")
        writer.write(b"secret\n")
        assert await reader.readline() == b"secret\n"
        writer.close()

    asyncio.run(main())


class _Lines(asyncio.Protocol):
    """Collects what arrives, a line at a time."""

    def __init__(self) -> None:
        self.buffer = b""
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.arrived.set()

    async def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def test_loop_start_tls_upgrades_our_transport(lab, peer, stack, certs):
    """The transport-level upgrade every supported Python has: loop.start_tls on our transport."""
    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "starttls", "9205", chain, key)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await maio.create_connection(_Lines, stack, lab.peer_ip, 9205)
        assert isinstance(protocol, _Lines)
        transport.write(b"STARTTLS\n")
        assert await protocol.line() == b"OK\n"
        tls = await loop.start_tls(transport, protocol, certs.client_context(), server_hostname="peer.test")
        assert tls is not None
        ssl_object = tls.get_extra_info("ssl_object")
        assert ssl_object is not None and ssl_object.version().startswith("TLS")
        tls.write(b"secret\n")
        assert await protocol.line() == b"secret\n"
        tls.close()

    asyncio.run(main())


def test_tls_server_and_client_both_ways(lab, peer, stack, certs):
    """Our asyncio TLS server answers the kernel's TLS client; our TLS client verifies the kernel's."""
    chain, key = certs.files["peer.test"]
    peer(PEER_PY, "tls", "echo", "9204", chain, key)

    async def main() -> None:
        server = await maio.start_server(echo_handler, stack, 9443, ssl=certs.server_context())
        tls_client = (
            "import socket, ssl, sys\n"
            f"ctx = ssl.create_default_context(cafile={certs.ca_file!r})\n"
            f"s = ctx.wrap_socket(socket.create_connection(({STACK_IP!r}, 9443), timeout=10),"
            " server_hostname='stack.test')\n"
            "s.sendall(b'hello\\n')\n"
            "sys.stdout.write(s.recv(100).decode())\n"
        )
        client = await asyncio.create_subprocess_exec(
            *lab.ns(sys.executable, "-c", tls_client),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(client.communicate(), 30)
        assert out == b"hello\n", err
        reader, writer = await maio.open_connection(
            stack, lab.peer_ip, 9204, ssl=certs.client_context(), server_hostname="peer.test"
        )
        assert writer.get_extra_info("peercert")["subjectAltName"] == (("DNS", "peer.test"),)
        writer.write(b"over tls\n")
        assert await reader.readline() == b"over tls\n"
        writer.close()
        with pytest.raises(ssl_error()):
            await maio.open_connection(
                stack, lab.peer_ip, 9204, ssl=certs.client_context(), server_hostname="wrong.test"
            )
        server.close()

    asyncio.run(main())


def ssl_error():
    import ssl

    return ssl.SSLCertVerificationError


class Counting(asyncio.Protocol):
    """Counts what arrives; pauses reading when asked to."""

    def __init__(self) -> None:
        self.received = 0
        self.paused_writing = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def pause_writing(self) -> None:
        self.paused_writing += 1

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def test_transport_flow_control_pause_reading_and_write_limits(lab, peer, stack):
    sink = peer(PEER_PY, "sink", "9205")
    size = 8 << 20
    data = pattern(size)

    async def main() -> None:
        transport, proto = await maio.create_connection(Counting, stack, lab.peer_ip, 9205)
        transport.set_write_buffer_limits(high=256 << 10)
        assert transport.get_write_buffer_limits() == (64 << 10, 256 << 10)
        transport.write(data)
        assert proto.paused_writing == 1, "the protocol is told to stop writing"
        assert transport.get_write_buffer_size() > 0
        transport.write_eof()
        await asyncio.wait_for(proto.done, 60)

    asyncio.run(main())
    assert sink.result(30) == f"{size} {hashlib.sha256(data).hexdigest()}"


def test_pause_reading_holds_data_in_the_stack(lab, peer, stack):
    size = 4 << 20
    peer(PEER_PY, "source", "9206", str(size))

    async def main() -> None:
        transport, proto = await maio.create_connection(Counting, stack, lab.peer_ip, 9206)
        transport.pause_reading()
        assert not transport.is_reading()
        await asyncio.sleep(0.5)
        assert proto.received == 0, "nothing is delivered while paused"
        transport.resume_reading()
        await asyncio.wait_for(proto.done, 30)
        assert proto.received == size

    asyncio.run(main())


def test_stack_closed_under_a_running_event_loop(lab, peer):
    peer(PEER_PY, "echo", "9207")
    stack = mipfast.Stack(lab.iface, ip="10.77.0.2/24")
    stack.start()

    async def main() -> None:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9207)
        pending = asyncio.create_task(reader.read(100))
        await asyncio.sleep(0.1)
        stack.close()
        with pytest.raises(OSError) as e:
            await asyncio.wait_for(pending, 5)
        assert e.value.errno == errno.EBADF, "the stack is closed"
        assert not maio._device_watches.get(asyncio.get_running_loop()), "the closed stack's watch stopped"
        writer.close()

    asyncio.run(main())


def test_the_loop_polls_the_device_and_the_driver_covers_a_busy_loop(lab, peer, stack):
    """While a transport is open the event loop watches the stack's device itself
    (one per loop and stack, released with the last transport); the driver thread
    still answers the wire when the loop is blocked: pings from the namespace get
    their replies while the loop sleeps in a blocking call."""
    peer(PEER_PY, "echo", "9210")

    async def main() -> tuple[int, list[str]]:
        loop = asyncio.get_running_loop()
        streams = [await maio.open_connection(stack, lab.peer_ip, 9210) for _ in range(3)]
        watches = maio._device_watches.get(loop, {})
        assert len(watches) == 1 and next(iter(watches.values())).users == 3
        reader, writer = streams[0]
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        ping = await asyncio.create_subprocess_exec(
            *lab.ns(*ping_cmd(STACK_IP, 5, interval=0.1, deadline=2)),
            stdout=asyncio.subprocess.PIPE,
        )
        # The loop is busy past ping's 2 s deadline: only the driver can answer.
        time.sleep(3.0)
        out, _ = await asyncio.wait_for(ping.communicate(), 10)
        for _, w in streams:
            w.close()
            await w.wait_closed()
        await asyncio.sleep(0)
        # It lingers a moment for the next connection (a client with a connection per
        # request), then stops.
        lingering = list(maio._device_watches.get(loop, {}).values())
        assert len(lingering) == 1 and lingering[0].users == 0, lingering
        await asyncio.sleep(maio._LINGER + 0.2)
        assert not maio._device_watches.get(loop), "the device watch outlived its linger"
        return ping.returncode or 0, [line for line in out.decode().splitlines() if "received" in line]

    code, summary = asyncio.run(main())
    assert code == 0 and " 5 received" in summary[0], summary


def test_a_device_watch_ends_with_its_loop(lab, peer, stack):
    """A loop that ends while its device watch lingers after its last transport, or
    with a transport left open, stops polling the device, so that the driver thread
    has it again: the watch goes with the loop's selector, whether ``asyncio.run``
    closes the loop or it is closed by hand. (The watch holds the loop weakly: were it to hold
    it through a timer, or were the table of watches to hold it, the loop and the
    watch would outlive each other.)"""
    peer(PEER_PY, "echo", "9212")
    watches: list[weakref.ref[Any]] = []

    async def client() -> None:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9212)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        loop = asyncio.get_running_loop()
        watches.extend(weakref.ref(w) for w in maio._device_watches[loop].values())
        writer.close()
        await writer.wait_closed()
        assert [w().users for w in watches] == [0], "lingering"

    asyncio.run(client())
    assert len(watches) == 1 and watches[0]() is None, "the watch outlived asyncio.run"

    async def left_open() -> None:  # a protocol's transport, never closed
        await maio.create_connection(asyncio.Protocol, stack, lab.peer_ip, 9212)
        watches.extend(weakref.ref(w) for w in maio._device_watches[asyncio.get_running_loop()].values())

    watches.clear()
    asyncio.run(left_open())
    gc.collect()
    assert len(watches) == 1 and watches[0]() is None, "the watch outlived asyncio.run, a transport open"

    watches.clear()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(client())
    loop.close()  # and still referenced: its closed selector lets go of the watch
    gc.collect()
    assert watches[0]() is None, "the watch outlived its closed loop"
    del loop
    # The driver has the device again: a connection made by a blocking call works.
    with stack.connect((lab.peer_ip, 9212), timeout=5) as conn:
        conn.sendall(b"pong")
        assert conn.recv(4, socket.MSG_WAITALL) == b"pong"


def test_sockets_on_a_polling_loop_need_no_descriptor_each(lab, peer, stack):
    """A loop that polls the device learns which of its sockets are ready from the
    stack's ready set: 50 connections add no descriptor each (a readiness descriptor
    is a socketpair), and a reader that leaves data behind is called again."""
    peer(PEER_PY, "echo", "9211")

    async def main() -> tuple[int, int, list[bytes], bool]:
        before = open_fds()
        streams = [await maio.open_connection(stack, lab.peer_ip, 9211) for _ in range(50)]
        during = open_fds()
        for i, (_, w) in enumerate(streams):
            w.write(b"%04d" % i)
        replies = await asyncio.wait_for(asyncio.gather(*(r.readexactly(4) for r, _ in streams)), 20)
        # 600 KiB echoed back arrive faster than one read of 256 KiB takes them.
        reader, writer = streams[0]
        big = bytes(range(256)) * 2400
        writer.write(big)
        back = await asyncio.wait_for(reader.readexactly(len(big)), 20)
        for _, w in streams:
            w.close()
            await w.wait_closed()
        return before, during, replies, back == big

    before, during, replies, intact = asyncio.run(main())
    assert replies == [b"%04d" % i for i in range(50)]
    assert intact, "the 600 KiB echo came back changed"
    assert during - before < 10, f"{during - before} descriptors for 50 connections"


def _requests_client(conns: int, each: int, size: int) -> str:
    return f"""
import asyncio, sys
def reply(i): return bytes((i + k) % 251 for k in range({size}))
async def one(c):
    reader, writer = await asyncio.open_connection("{STACK_IP}", 9212)
    good = 0
    for r in range({each}):
        i = c * 1000 + r
        writer.write(i.to_bytes(4, "big"))
        good += await reader.readexactly({size}) == reply(i)
    writer.close()
    return good
async def main():
    return sum(await asyncio.gather(*(one(c) for c in range({conns}))))
print("ok", asyncio.run(main()))
"""


@pytest.mark.parametrize("size", [6000, 64])
def test_a_loop_that_is_behind_hands_its_replies_to_the_driver(lab, peer, stack, size):
    """A server loop with requests still waiting at the device leaves a reply of
    several frames to the driver thread (`tx_handed_off`), which sends it; a reply of
    one frame goes out at once. Either way every reply arrives intact and in order:
    20 connections × 20 requests, the loop held 2 ms per request so the rest queue."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.read(4):
            i = int.from_bytes(request, "big")
            time.sleep(0.002)  # the loop falls behind: other requests wait at the device
            writer.write(bytes((i + k) % 251 for k in range(size)))
        writer.close()

    async def main() -> tuple[str, int]:
        server = await maio.start_server(serve, stack, 9212, backlog=64)
        before = stack.stats()["counters"]["tx_handed_off"]
        client = await asyncio.create_subprocess_exec(
            *lab.ns(sys.executable, "-c", _requests_client(20, 20, size)),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(client.communicate(), 120)
        server.close()
        await server.wait_closed()
        return out.decode().strip(), stack.stats()["counters"]["tx_handed_off"] - before

    out, handed_off = asyncio.run(main())
    assert out == "ok 400"
    if size > 1500:
        assert handed_off > 0, "a loop that is behind sends several frames through the driver"
    else:
        assert handed_off == 0, "a one-frame reply goes out at once"


def test_a_handed_off_reply_goes_out_while_the_loop_is_blocked(lab, peer, stack):
    """The driver sends what a loop handed off: the reply reaches the peer while the loop
    that wrote it is blocked for a second (another client's byte waits at the device, so
    the write is handed off)."""
    client = f"""
import socket, time
main = socket.create_connection(("{STACK_IP}", 9213))
other = socket.create_connection(("{STACK_IP}", 9213))
main.sendall(b"go")
time.sleep(0.1)
other.sendall(b"x")  # waits at the device while the server's loop sleeps
got = b""
while len(got) < 6000:
    got += main.recv(65536)
print(time.monotonic(), got == bytes(range(250)) * 24)
"""
    written: list[float] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read(2) == b"go":
            time.sleep(0.3)  # the loop is behind: the other client's byte waits
            writer.write(bytes(range(250)) * 24)
            written.append(time.monotonic())
            time.sleep(1.0)  # and now blocked: only the driver can send the reply
        await reader.read()
        writer.close()

    async def main() -> tuple[list[str], int]:
        server = await maio.start_server(serve, stack, 9213)
        before = stack.stats()["counters"]["tx_handed_off"]
        proc = await asyncio.create_subprocess_exec(
            *lab.ns(sys.executable, "-c", client), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        server.close()
        await server.wait_closed()
        return out.decode().split(), stack.stats()["counters"]["tx_handed_off"] - before

    (arrived, intact), handed_off = asyncio.run(main())
    assert intact == "True" and handed_off >= 1
    assert float(arrived) - written[0] < 0.5, "the reply waited for the loop"


def test_loop_sendfile_over_our_transport_then_reading(lab, peer, stack, tmp_path):
    """``loop.sendfile`` takes asyncio's read-and-write fallback on our transport (it raised
    ``RuntimeError`` before), and reading goes on after it, also when it starts before the
    transport's first read is armed (``is_reading()`` said False then, so the fallback left
    reading paused for good)."""
    peer(PEER_PY, "echo", "9219")
    data = pattern(300_000)
    path = tmp_path / "file"
    path.write_bytes(data)

    async def main() -> tuple[int, bytes]:
        reader, writer = await maio.open_connection(stack, lab.peer_ip, 9219)
        assert writer.transport.is_reading()
        with open(path, "rb") as f:
            sent = await asyncio.get_running_loop().sendfile(writer.transport, f)
        echoed = await asyncio.wait_for(reader.readexactly(len(data)), 30)
        writer.close()
        await writer.wait_closed()
        return sent, echoed

    sent, echoed = asyncio.run(main())
    assert sent == len(data)
    assert echoed == data


def test_create_connection_returns_once_the_protocol_has_its_transport(lab, peer, stack):
    """As asyncio's: ``connection_made`` has run when ``create_connection`` returns, so a
    protocol that keeps its transport can be written through at once (aiohttp's does)."""
    peer(PEER_PY, "echo", "9218")

    class Keeper(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.BaseTransport | None = None
            self.received = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.received += data
            if self.received.endswith(b"\n") and not self.done.done():
                self.done.set_result(bytes(self.received))

    async def main() -> bytes:
        transport, protocol = await maio.create_connection(Keeper, stack, lab.peer_ip, 9218)
        assert protocol.transport is transport
        protocol.transport.write(b"written through the protocol\n")
        echoed = await asyncio.wait_for(protocol.done, 10)
        transport.close()
        return echoed

    assert asyncio.run(main()) == b"written through the protocol\n"


LOOPS_AND_BRIDGES = """
import asyncio, logging, sys, threading, time
import mipfast, mipfast.asyncio as maio, mipfast.bridge
log = logging.getLogger("mipfast")
log.setLevel(logging.DEBUG); log.addHandler(logging.NullHandler()); log.propagate = False
stack = mipfast.Stack(sys.argv[1], ip=sys.argv[2])
peer = (sys.argv[3], int(sys.argv[4]))
stop = False

def bridged():
    # Bridged sockets: the driver steps their bridges and logs their closes under the engine lock.
    while not stop:
        s = mipfast.bridge.socket_for(stack.connect(peer, timeout=5))
        s.sendall(b"y" * 64)
        got = b""
        while len(got) < 64:
            got += s.recv(64)
        s.close()

async def once():
    reader, writer = await maio.open_connection(stack, *peer)
    writer.write(b"x" * 64)
    await reader.readexactly(64)
    writer.close()

thread = threading.Thread(target=bridged, daemon=True)
thread.start()
end, loops = time.monotonic() + 3, 0
while time.monotonic() < end:
    asyncio.run(once())  # the loop's close lets go of its device poller
    mipfast.reset_logging()  # levels looked up again: the driver needs the GIL for its next line
    loops += 1
stop = True
thread.join()
stack.close()
print("ok", loops, flush=True)
"""


def test_a_loop_letting_go_of_its_poller_while_the_driver_logs_does_not_deadlock(lab, peer):
    """Rust log lines go to Python's `logging`, so a driver that logs under the engine lock waits
    for the GIL. Anything that waits for the engine lock with the GIL held then deadlocks: a
    loop's device poller, let go of when the loop closed, did (a CI run hung there). Such drops
    now let go of the GIL first. Loops open and close while the driver steps bridges, with DEBUG
    logging on; the build before hung within a second."""
    peer(PEER_PY, "echo", "9320")
    run = subprocess.run(
        [sys.executable, "-c", LOOPS_AND_BRIDGES, lab.iface, STACK_CIDR, lab.peer_ip, "9320"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.startswith("ok "), run.stderr[-2000:]
    assert int(run.stdout.split()[1]) > 10, run.stdout
