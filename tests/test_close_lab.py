"""stack.close() from another thread ends every blocked call at once with
OSError(EBADF), with a driver thread and without one (the callers poll)."""

from __future__ import annotations

import errno
import threading
import time
from typing import Callable

import pytest
from conftest import PEER_PY

import mipfast

STACK_IP = "10.77.0.31"
SILENT_PORT = 9031
NOBODY = "10.77.0.231"  # in the lab's subnet, answered by no one


class Blocked(threading.Thread):
    """Runs one blocking call and records how (and when) it ended."""

    def __init__(self, name: str, call: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.call = call
        self.error: BaseException | None = None
        self.returned: object = None
        self.ended_at: float | None = None

    def run(self) -> None:
        try:
            self.returned = self.call()
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            self.error = e
        self.ended_at = time.monotonic()


def blocked_calls(stack: mipfast.Stack, peer_ip: str) -> list[Blocked]:
    """One thread per kind of blocking call, each with nothing to wait for."""
    idle = stack.connect((peer_ip, SILENT_PORT), timeout=5)
    idle.settimeout(None)
    full = stack.connect((peer_ip, SILENT_PORT + 1), timeout=5)
    full.settimeout(None)
    listener = stack.listen(9032)
    udp = stack.udp(("0.0.0.0", 9033))
    udp_into = stack.udp(("0.0.0.0", 9034))
    blob = b"x" * (64 << 20)  # far more than the silent peer's windows hold
    return [
        Blocked("recv", lambda: idle.recv(100)),
        Blocked("recv_into", lambda: idle.recv_into(bytearray(100))),
        Blocked("sendall", lambda: full.sendall(blob)),
        Blocked("accept", lambda: listener.accept()),
        Blocked("connect", lambda: stack.connect((NOBODY, 80), timeout=30)),
        Blocked("recvfrom", lambda: udp.recvfrom(100)),
        Blocked("recvfrom_into", lambda: udp_into.recvfrom_into(bytearray(100))),
        Blocked("resolve", lambda: stack.resolve("nobody.answers.lab", timeout=30)),
        Blocked("ping", lambda: stack.ping(NOBODY, count=30, timeout=1)),
        Blocked("poll", lambda: poll_forever(stack)),
    ]


def poll_forever(stack: mipfast.Stack) -> None:
    while True:  # poll returns after any progress; only close ends this
        stack.poll(timeout=30)


def close_and_time(stack: mipfast.Stack, threads: list[Blocked]) -> dict[str, float]:
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)  # every call is inside its wait by now
        running = {t.name: t.error or t.returned for t in threads if t.ended_at is not None}
        assert not running, f"these returned before close: {running}"
    finally:
        closed_at = time.monotonic()
        stack.close()
    for t in threads:
        t.join(5)
    late = {t.name: t.error or t.returned for t in threads if t.ended_at is None}
    assert not late, f"still blocked 5 s after close: {late}"
    return {t.name: t.ended_at - closed_at for t in threads}


def check_ebadf(threads: list[Blocked], took: dict[str, float]) -> None:
    for t in threads:
        assert isinstance(t.error, OSError), f"{t.name}: {t.error!r} / returned {t.returned!r}"
        assert t.error.errno == errno.EBADF, f"{t.name}: {t.error!r}"
    print("returned after close (ms):", {k: round(v * 1000, 1) for k, v in took.items()})
    # A hang is what this catches; the figure (within 100 ms here) is printed.
    slow = {k: v for k, v in took.items() if v > 1.0}
    assert not slow, slow


@pytest.mark.parametrize("driven", [True, False], ids=["driver-thread", "self-polling"])
def test_close_wakes_every_blocked_call_with_ebadf(lab, peer, driven):
    peer(PEER_PY, "silent", str(SILENT_PORT))
    peer(PEER_PY, "silent", str(SILENT_PORT + 1))
    stack = mipfast.Stack(lab.iface, ip=f"{STACK_IP}/24", dns="10.77.0.232")
    if driven:
        stack.start()  # else every blocked call polls for itself
    try:
        stack.wait_ready(timeout=1)
        threads = blocked_calls(stack, lab.peer_ip)
    except BaseException:
        stack.close()
        raise
    took = close_and_time(stack, threads)
    check_ebadf(threads, took)


def test_close_wakes_wait_ready(lab):
    for driven in (True, False):
        stack = mipfast.Stack(lab.iface, bpf="not udp")  # DHCP is never heard
        if driven:
            stack.start()
        threads = [Blocked("wait_ready", lambda s=stack: s.wait_ready(timeout=30))]
        took = close_and_time(stack, threads)
        check_ebadf(threads, took)
