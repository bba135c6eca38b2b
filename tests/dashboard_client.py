"""A kernel-side dashboard client for the lab tests (run in the namespace with
sys.executable): plays a scenario and prints what it saw as JSON."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time

from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Request, TextMessage


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie = ""
        self.csrf = ""

    def call(self, method: str, path: str, body=None, csrf: bool = True, headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = {"Content-Type": "application/json", **(headers or {})}
        if self.cookie:
            h["Cookie"] = self.cookie
        if csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        c.request(method, path, data, h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("latin-1")[:200]
        return r.status, dict(r.getheaders()), parsed

    def login(self, user: str, password: str):
        status, headers, body = self.call("POST", "/api/login", {"username": user, "password": password})
        if status == 200:
            self.cookie = headers["Set-Cookie"].split(";")[0]
            self.csrf = body["csrf"]
        return status, headers, body

    def watch(self):
        """Opens /api/watch; returns (socket, wsproto connection)."""
        s = socket.create_connection((self.host, self.port), timeout=10)
        ws = WSConnection(ConnectionType.CLIENT)
        s.sendall(ws.send(Request(host=f"{self.host}:{self.port}", target="/api/watch",
                                  extra_headers=[(b"Cookie", self.cookie.encode())])))  # fmt: skip
        return s, ws

    partial: dict[int, str] = {}

    @classmethod
    def messages(cls, s: socket.socket, ws: WSConnection, count: int, limit: float, until=None):
        """Up to `count` messages within `limit` seconds (or until one satisfies `until`)."""
        got, accepted, end = [], False, time.monotonic() + limit
        text = cls.partial.pop(id(ws), "")

        while len(got) < count and time.monotonic() < end:
            s.settimeout(max(end - time.monotonic(), 0.01))
            try:
                data = s.recv(1 << 20)
            except socket.timeout:
                break
            if not data:
                break
            ws.receive_data(data)
            for e in ws.events():
                if isinstance(e, AcceptConnection):
                    accepted = True
                elif isinstance(e, TextMessage):
                    text += e.data
                    if e.message_finished:
                        got.append(json.loads(text))
                        text = ""
                        if until is not None and until(got[-1]):
                            cls.partial[id(ws)] = text
                            return accepted, got[-1:]
        cls.partial[id(ws)] = text
        return accepted, got


def raw(host: str, port: int, payload: bytes, wait: float = 3.0) -> bytes:
    s = socket.create_connection((host, port), timeout=wait)
    s.sendall(payload)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def flow(host: str, port: int, admin_pw: str, user_pw: str, me: str) -> dict:
    """`me`: this namespace's address, which the device's tools reach."""
    out: dict = {}
    anon = Client(host, port)
    out["root_anon"] = anon.call("GET", "/")[:2]
    out["status_anon"] = anon.call("GET", "/api/status")[0]
    out["login_page"] = anon.call("GET", "/login")[0]
    out["bad_login"] = anon.login("admin", "wrong")[0]
    user = Client(host, port)
    status, headers, body = user.login("user", user_pw)
    out["user_login"] = (status, headers.get("Set-Cookie", ""), body)
    out["user_status"] = user.call("GET", "/api/status")[2]
    out["user_arp"] = user.call("GET", "/api/arp")[2]
    out["user_connections"] = user.call("GET", "/api/connections")[2]
    out["user_config"] = user.call("GET", "/api/config")[2]
    out["user_set_config"] = user.call("POST", "/api/config", {"refresh": 2})[0]
    out["page"] = user.call("GET", "/")[0]
    admin = Client(host, port)
    out["admin_login"] = admin.login("admin", admin_pw)[0]
    out["no_csrf"] = admin.call("POST", "/api/config", {"refresh": 2}, csrf=False)[0]
    out["cross_origin"] = admin.call("POST", "/api/config", {"refresh": 2},
                                     headers={"Origin": "http://evil.example"})[0]  # fmt: skip
    out["bad_setting"] = admin.call("POST", "/api/config", {"congestion": "bbr"})[:3:2]
    out["unknown_path"] = admin.call("GET", "/api/nothing")[0]
    out["wrong_method"] = admin.call("DELETE", "/api/status")[:2]
    out["too_big"] = admin.call("POST", "/api/config", b"x" * 200_000)[0]
    out["ping"] = admin.call("POST", "/api/tools/ping", {"host": me, "count": 2})[2]
    out["connect_refused"] = admin.call("POST", "/api/tools/connect", {"host": me, "port": 9})[2]
    # A capture of the device's own frames, downloaded as a .pcap.
    out["capture_user"] = user.call("POST", "/api/capture/start", {})[0]
    out["capture_start"] = admin.call("POST", "/api/capture/start", {"limit": 1 << 20})[2]
    admin.call("POST", "/api/tools/ping", {"host": me, "count": 3})
    out["capture_stop"] = admin.call("POST", "/api/capture/stop", {})[2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/api/capture.pcap", headers={"Cookie": admin.cookie})
    r = c.getresponse()
    path = f"/tmp/mipfast-capture-{os.getpid()}.pcap"
    with open(path, "wb") as f:
        f.write(r.read())
    out["capture_file"] = (r.status, r.getheader("Content-Type"), r.getheader("Content-Disposition"), path)
    # 200 requests on one keep-alive connection.
    c = http.client.HTTPConnection(host, port, timeout=10)
    codes, ports = [], set()
    for _ in range(200):
        c.request("GET", "/api/status", headers={"Cookie": admin.cookie})
        r = c.getresponse()
        r.read()
        codes.append(r.status)
        ports.add(c.sock.getsockname()[1])
    c.close()
    out["keepalive"] = (codes.count(200), len(ports))
    # The live feed: a first snapshot at once, then a push as soon as a setting changes.
    s, ws = admin.watch()
    accepted, first = Client.messages(s, ws, 1, 5)
    out["watch_accepted"] = accepted
    out["watch_first"] = first[0]["config"] if first else None
    other = Client(host, port)  # another admin session changes a setting
    other.login("admin", admin_pw)
    start = time.monotonic()
    out["set_config"] = other.call("POST", "/api/config", {"congestion": "newreno", "refresh": 30})[:3:2]
    _, pushed = Client.messages(s, ws, 100, 5, until=lambda m: m["config"]["congestion"] == "newreno")
    out["pushed_config"] = pushed[0]["config"] if pushed else None
    out["push_delay"] = time.monotonic() - start
    s.close()
    anon_ws = Client(host, port)
    s, ws = anon_ws.watch()
    out["watch_anon"] = raw_status(s)
    # Malformed and pipelined requests on raw sockets.
    out["malformed"] = raw(host, port, b"GARBAGE\r\n\r\n")[:12].decode()
    two = f"GET /login HTTP/1.1\r\nHost: {host}\r\n\r\nGET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n"
    out["pipelined"] = raw(host, port, two.encode(), wait=2).count(b"HTTP/1.1 ")
    out["still_serving"] = admin.call("GET", "/api/status")[0]
    # Logging out ends the session.
    admin.call("POST", "/api/logout", {})
    out["after_logout"] = admin.call("GET", "/api/status")[0]
    return out


def raw_status(s: socket.socket) -> int:
    data = s.recv(4096)
    s.close()
    return int(data.split(b" ")[1])


def crowd(host: str, port: int, n: int) -> dict:
    """Holds n idle connections, then tries one more."""
    held = [socket.create_connection((host, port), timeout=5) for _ in range(n)]
    time.sleep(0.5)
    extra = raw(host, port, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n", wait=3)
    for s in held:
        s.close()
    time.sleep(0.5)
    after = raw(host, port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wait=3)
    return {"extra": extra[:12].decode(), "after": after[:12].decode()}


def slowloris(host: str, port: int) -> dict:
    """Sends half a request and waits: the server must answer 408 and close."""
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    closed_after = time.monotonic() - start
    after = raw(host, port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return {"answer": data[:12].decode(), "closed_after": closed_after, "after": after[:12].decode()}


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "flow":
        result = flow(host, port, sys.argv[4], sys.argv[5], sys.argv[6])
    elif mode == "publish":  # as the user account, through the page's API
        c = Client(host, port)
        c.login("user", sys.argv[4])
        status, _, body = c.call("POST", "/api/mqtt/publish", {"payload": sys.argv[5]})
        result = {"status": status, "body": body}
    elif mode == "crowd":
        result = crowd(host, port, int(sys.argv[4]))
    else:
        result = slowloris(host, port)
    print(json.dumps(result))
