"""The dashboard served by the stack, reached from the lab namespace's kernel: login and
roles, REST, the live WebSocket, settings applied and pushed, tools, robustness against
malformed, oversized, pipelined, slow and too many clients; and `python -m mipfast`
printing the URL, the generated passwords and its summary."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import scapy.all as scapy
from conftest import STACK_CIDR, STACK_IP
from helpers import linux_lab, peer_ipv6, stop

import mipfast
import mipfast.dashboard

CLIENT = str(Path(__file__).resolve().parent / "dashboard_client.py")
PASSWORDS = {"admin": "admin-secret", "user": "user-secret"}


class Served:
    """The dashboard on its own event loop in a thread, over the test's stack."""

    def __init__(self, stack, port: int, limits: mipfast.dashboard.Limits, **options) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.server = None

        async def start() -> None:
            self.server = await mipfast.dashboard.serve(stack, port, PASSWORDS, limits=limits, **options)
            self.ready.set()

        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, start) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def served(stack):
    limits = mipfast.dashboard.Limits(max_clients=8, request_timeout=1.0, idle_timeout=2.0)
    s = Served(stack, 8000, limits)
    yield s
    s.close()


def client(lab, *args: str, timeout: float = 60) -> dict:
    r = subprocess.run(lab.ns(sys.executable, CLIENT, *args), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_login_roles_rest_watch_and_settings(lab, stack, served):
    out = client(lab, "flow", STACK_IP, "8000", PASSWORDS["admin"], PASSWORDS["user"], lab.peer_ip)
    status, headers = out["root_anon"]
    assert status == 302 and headers["Location"] == "/login", "no session: sent to the login page"
    assert out["status_anon"] == 401 and out["login_page"] == 200 and out["bad_login"] == 401
    status, cookie, body = out["user_login"]
    assert status == 200 and body["role"] == "user" and not body["admin"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert len(cookie.split(";")[0].split("=", 1)[1]) >= 22, "a 128-bit token"
    st = out["user_status"]
    assert st["ip"] == STACK_IP and st["netmask"] == "255.255.255.0" and st["dhcp"] == "static"
    assert st["counters"]["frames_in"] > 0 and "tcp_no_listener" in st["drops"]
    assert {"ip": lab.peer_ip}.items() <= out["user_arp"][0].items()
    states = {c["state"] for c in out["user_connections"]}
    assert "LISTEN" in states and "ESTABLISHED" in states, "the dashboard's own connection shows"
    assert out["user_config"]["congestion"] == "cubic"
    assert out["user_set_config"] == 403, "the user account only reads"
    assert out["page"] == 200 and out["admin_login"] == 200
    assert out["no_csrf"] == 403 and out["cross_origin"] == 403
    assert out["bad_setting"][0] == 400 and "congestion" in out["bad_setting"][1]["error"]
    assert out["unknown_path"] == 404 and out["wrong_method"][0] == 405
    assert out["too_big"] == 413
    assert out["ping"]["ok"] and len(out["ping"]["rtts"]) == 2 and all(out["ping"]["rtts"])
    assert out["connect_refused"]["ok"] is False and "refused" in out["connect_refused"]["error"].lower()
    assert out["capture_user"] == 403
    assert out["capture_start"]["running"] and out["capture_start"]["limit"] == 1 << 20
    stopped = out["capture_stop"]
    assert not stopped["running"] and stopped["frames"] >= 6, "three echo requests and replies at least"
    status, kind, disposition, path = out["capture_file"]
    assert status == 200 and kind == "application/vnd.tcpdump.pcap" and ".pcap" in disposition
    try:
        frames = scapy.rdpcap(path)
        dump = subprocess.run(["tcpdump", "-nr", path, "icmp"], capture_output=True, text=True, check=True)
    finally:
        os.unlink(path)
    assert dump.stdout.count("ICMP echo request") >= 3 and dump.stdout.count("ICMP echo reply") >= 3
    assert len(frames) == stopped["frames"]
    echoes = [f for f in frames if f.haslayer(scapy.ICMP) and f[scapy.ICMP].type in (0, 8)]
    assert len(echoes) >= 6 and {f[scapy.IP].dst for f in echoes} == {lab.peer_ip, STACK_IP}
    assert out["watch_accepted"] and out["watch_first"]["refresh"] == 1.0
    assert out["set_config"][0] == 200
    assert out["pushed_config"]["congestion"] == "newreno" and out["pushed_config"]["refresh"] == 30
    assert out["push_delay"] < 1.0, "another session's change is pushed at once, not at the next refresh"
    assert stack.congestion == "newreno", "applied to the stack"
    assert out["watch_anon"] == 401
    assert out["malformed"].startswith("HTTP/1.1 400")
    assert out["pipelined"] == 2
    assert out["keepalive"] == [200, 1], "200 requests, one connection"
    assert out["still_serving"] == 200, "the abuse above stopped nothing"
    assert out["after_logout"] == 401


def test_too_many_clients_and_slow_clients_do_not_stop_the_server(lab, stack, served):
    out = client(lab, "crowd", STACK_IP, "8000", "8")
    assert out["extra"].startswith("HTTP/1.1 503"), "the ninth client is turned away"
    assert out["after"].startswith("HTTP/1.1 200"), "room again once the others left"
    slow = client(lab, "slowloris", STACK_IP, "8000")
    assert slow["answer"].startswith("HTTP/1.1 408")
    assert slow["closed_after"] < 5 and slow["after"].startswith("HTTP/1.1 200")
    assert served.server.http.clients == 0 or served.server.http.clients <= 1


def test_python_m_mipfast_serves_the_dashboard_and_prints_its_summary(lab, tmp_path):
    proc_tmp = tmp_path
    proc = subprocess.Popen(
        [sys.executable, "-m", "mipfast", "-i", lab.iface, "--ip", STACK_CIDR, "--user-password", "u-pass"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("  admin password:"):
                break
        assert f"Dashboard: http://{STACK_IP}:8000/\n" in lines, lines
        admin_pw = lines[-1].split(":", 1)[1].strip()
        assert len(admin_pw) >= 12 and not any("user password" in x for x in lines), "only generated ones"
        # The stack answers as mipfast.local (multicast DNS) once it has announced the name.
        assert proc.stdout.readline() == "mDNS: http://mipfast.local:8000/\n"
        # Then its IPv6 link-local address, once duplicate address detection is done.
        assert proc.stdout.readline() == "IPv6: fe80::1ff:fe02:377\n"
        out = client(lab, "flow", STACK_IP, "8000", admin_pw, "u-pass", lab.peer_ip)
        os.unlink(out["capture_file"][3])  # the flow downloads a capture; the test above reads it
        assert out["admin_login"] == 200 and out["user_login"][0] == 200
        base, jar = f"http://{STACK_IP}:8000", str(Path(proc_tmp) / "jar")

        def curl(*args: str) -> str:
            r = subprocess.run(
                lab.ns("curl", "-s", "-b", jar, "-c", jar, *args), capture_output=True, text=True
            )
            return r.stdout

        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/") == "302"
        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/api/status") == "401"
        credentials = json.dumps({"username": "user", "password": "u-pass"})
        login = json.loads(
            curl("-H", "Content-Type: application/json", "-d", credentials, f"{base}/api/login")
        )
        assert login["role"] == "user"
        status = json.loads(curl(f"{base}/api/status"))
        assert status["ip"] == STACK_IP and status["mac"] == mipfast.DEFAULT_MAC
        assert status["mdns"] == "mipfast.local"
        assert [(a["address"], a["state"]) for a in status["ipv6"]] == [("fe80::1ff:fe02:377", "preferred")]
        assert json.loads(curl(f"{base}/api/session"))["csrf"] == login["csrf"]
        # The same dashboard over IPv6, at its link-local address (the kernel's end
        # speaks IPv6 for this part only).
        with peer_ipv6(lab):
            base6 = f"http://[fe80::1ff:fe02:377%{lab.peer}]:8000"
            assert wait_until(
                lambda: curl("-g", "-o", "/dev/null", "-w", "%{http_code}", f"{base6}/") == "302"
            )
            login6 = json.loads(
                curl("-g", "-H", "Content-Type: application/json", "-d", credentials, f"{base6}/api/login")
            )
            assert login6["role"] == "user"
            assert json.loads(curl("-g", f"{base6}/api/status"))["ip"] == STACK_IP
    finally:
        rest, err = stop(proc, signal.SIGINT, 15)
    assert proc.returncode == 0, err
    summary = rest.strip().splitlines()[-1]
    assert summary.startswith("mipfast: stopped after") and "dashboard connections served" in summary
    assert admin_pw not in err, "the generated password is never logged"


def wait_until(check, limit: float = 15) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


def broker(lab, tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883 0.0.0.0\nallow_anonymous true\n")
    proc = subprocess.Popen(
        lab.ns("mosquitto", "-c", str(conf)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    probe = lab.ns("mosquitto_pub", "-h", "127.0.0.1", "-t", "probe", "-m", "x")
    assert wait_until(lambda: subprocess.run(probe, capture_output=True).returncode == 0), (
        "mosquitto did not start"
    )
    return proc


@linux_lab  # mosquitto
def test_mqtt_console_through_the_stack(lab, stack, tmp_path):
    mosquitto = broker(lab, tmp_path)
    limits = mipfast.dashboard.Limits()
    served = Served(stack, 8000, limits, mqtt_url=f"mqtt://{lab.peer_ip}:1883", mqtt_topic="lab/dev")
    try:
        console = served.server.mqtt
        assert wait_until(lambda: console.connected), console.snapshot()
        status = subprocess.run(
            lab.ns("mosquitto_sub", "-h", "127.0.0.1", "-t", "lab/dev/status", "-C", "1", "-W", "20"),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert json.loads(status.stdout)["ip"] == STACK_IP, "the device publishes its status"
        subprocess.run(
            lab.ns("mosquitto_pub", "-h", "127.0.0.1", "-t", "lab/dev/hello", "-m", "from kernel"), check=True
        )
        assert wait_until(
            lambda: any(
                m["payload"] == "from kernel" and m["direction"] == "in"
                for m in console.snapshot()["messages"]
            )
        ), "messages to the topic arrive"
        sub = subprocess.Popen(
            lab.ns("mosquitto_sub", "-h", "127.0.0.1", "-t", "lab/dev", "-C", "1", "-W", "20"),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)
        sent = client(lab, "publish", STACK_IP, "8000", PASSWORDS["user"], "from page")
        assert sent["status"] == 200, sent
        assert sub.communicate(timeout=30)[0].strip() == "from page", "a user's message reaches the broker"
        # The broker goes away and comes back: the console reconnects with backoff.
        mosquitto.kill()
        mosquitto.wait()
        assert wait_until(lambda: not console.connected), "the loss is noticed"
        assert client(lab, "publish", STACK_IP, "8000", PASSWORDS["user"], "lost")["status"] == 503
        mosquitto = broker(lab, tmp_path)
        assert wait_until(lambda: console.connected and console.connects == 2, 40), console.snapshot()
    finally:
        served.close()
        mosquitto.kill()
        mosquitto.wait()


@linux_lab  # mosquitto
def test_mqtt_without_the_dashboard(lab, tmp_path):
    """`python -m mipfast --no-http --mqtt URL`: no page, but the device's MQTT link as with it."""
    mosquitto = broker(lab, tmp_path)
    cmd = [sys.executable, "-m", "mipfast", "-i", lab.iface, "--ip", STACK_CIDR, "--no-http"]
    proc = subprocess.Popen(
        [*cmd, "--mqtt", f"mqtt://{lab.peer_ip}:1883", "--mqtt-topic", "lab/cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = subprocess.run(
            lab.ns("mosquitto_sub", "-h", "127.0.0.1", "-t", "lab/cli/status", "-C", "1", "-W", "30"),
            capture_output=True, text=True, timeout=40,
        )  # fmt: skip
        assert json.loads(status.stdout)["ip"] == STACK_IP, (status, proc.poll())
        refused = subprocess.run(
            lab.ns("curl", "-s", "-m", "3", f"http://{STACK_IP}:8000/"), capture_output=True
        )
        assert refused.returncode != 0, "no dashboard was asked for"
        out, err = stop(proc, signal.SIGINT, 15)
        assert proc.returncode == 0, err
        assert "MQTT: mqtt://" in out and "Dashboard:" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mosquitto.kill()
        mosquitto.wait()


BROWSER = str(Path(__file__).resolve().parent / "browser.py")


@linux_lab  # chromium
def test_a_real_browser_logs_in_and_sees_the_live_page(lab, stack, served, tmp_path):
    shot = tmp_path / "dashboard.png"
    r = subprocess.run(
        lab.ns(sys.executable, BROWSER, f"http://{STACK_IP}:8000", PASSWORDS["admin"], str(shot)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    seen = json.loads(r.stdout)
    assert STACK_IP in seen["state"], "the DOM shows the stack's address"
    established = [row for row in seen["tcp_rows"] if row[0] == "ESTABLISHED"]
    assert any(row[1].startswith(f"{STACK_IP}:8000") for row in established), seen["tcp_rows"]
    assert shot.stat().st_size == seen["screenshot_bytes"] > 10_000
    print(f"screenshot: {shot}")


def test_the_dashboard_over_https(lab, stack, certs):
    served = Served(stack, 8000, mipfast.dashboard.Limits(), https_port=8443, tls=certs.server_context())
    try:
        url = "https://stack.test:8443"
        trust = ("--cacert", certs.ca_file, "--resolve", f"stack.test:8443:{STACK_IP}")

        def curl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                lab.ns("curl", "-s", *trust, *args), capture_output=True, text=True, timeout=30
            )

        page = curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/login")
        assert page.stdout == "200", page.stderr
        login = curl("-H", "Content-Type: application/json", "-d", json.dumps({"username": "user",
                     "password": PASSWORDS["user"]}), "-D", "-", f"{url}/api/login")  # fmt: skip
        assert "200" in login.stdout.splitlines()[0] and "HttpOnly" in login.stdout
        wrong = curl("-o", "/dev/null", "-w", "%{http_code}", f"https://{STACK_IP}:8443/login")
        assert wrong.stdout == "000", "the certificate names stack.test, not the address: curl refuses"
    finally:
        served.close()
