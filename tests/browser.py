"""A real browser against the dashboard (run in the lab namespace with sys.executable):
Debian's chromium, headless, driven over the DevTools protocol (a WebSocket, spoken here
with wsproto), logs in through the login form, waits for the live page and reports what
its DOM shows; saves a screenshot.

    browser.py URL PASSWORD SCREENSHOT.png
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import urlsplit

from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Request, TextMessage

DEBUG_PORT = 9333


class DevTools:
    """Just enough of the DevTools protocol: send a command, wait for its answer."""

    def __init__(self, ws_url: str) -> None:
        u = urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=u.netloc, target=u.path)))
        self.ids = itertools.count(1)
        self.text = ""
        self._wait(lambda e: isinstance(e, AcceptConnection))

    def _events(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("DevTools closed")
        self.ws.receive_data(data)
        yield from self.ws.events()

    def _wait(self, match):
        while True:
            for e in self._events():
                if isinstance(e, TextMessage):
                    self.text += e.data
                    if not e.message_finished:
                        continue
                    message, self.text = json.loads(self.text), ""
                    if match(message):
                        return message
                elif match(e):
                    return e

    def call(self, method: str, **params):
        n = next(self.ids)
        self.sock.sendall(
            self.ws.send(TextMessage(data=json.dumps({"id": n, "method": method, "params": params})))
        )
        reply = self._wait(lambda m: isinstance(m, dict) and m.get("id") == n)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")

    def wait_for(self, expression: str, limit: float = 20):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"never true: {expression}")


def main() -> None:
    url, password, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    profile = tempfile.mkdtemp(prefix="mipfast-chromium-")
    # Debian's chromium; GitHub's Ubuntu images ship Google Chrome (their chromium is a snap).
    names = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")
    chromium = next(filter(None, map(shutil.which, names)), None)
    if chromium is None:
        raise SystemExit(f"no browser installed (looked for {', '.join(names)})")
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--window-size=1280,1400", f"--remote-debugging-port={DEBUG_PORT}", f"--user-data-dir={profile}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # Its own process group, so that its helpers end with it; its own temporary files
        # (a singleton lock directory per run) inside the profile, which is removed.
        start_new_session=True, env={**os.environ, "TMPDIR": profile},
    )  # fmt: skip
    try:
        targets = None
        end = time.monotonic() + 30
        while time.monotonic() < end and not targets:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{DEBUG_PORT}/json/list", timeout=2) as r:
                    targets = [t for t in json.load(r) if t["type"] == "page"]
            except OSError:
                time.sleep(0.2)
        if not targets:
            raise SystemExit("chromium's DevTools did not come up")
        tools = DevTools(targets[0]["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        tools.call("Page.navigate", url=f"{url}/")  # no session yet: sent to the login page
        tools.wait_for("location.pathname === '/login' && document.readyState === 'complete'")
        tools.evaluate(
            f"document.querySelector('[name=password]').value = {json.dumps(password)};"
            "document.getElementById('login').requestSubmit(); true"
        )
        tools.wait_for("location.pathname === '/' && document.getElementById('live').textContent === 'live'")
        tools.wait_for("document.getElementById('state-list').textContent.includes('IP')")
        state = tools.evaluate("document.getElementById('state-list').innerText")
        rows = tools.evaluate(
            "[...document.querySelectorAll('#tcp tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
        )
        time.sleep(2.5)  # a few pushes, so that the chart has a line
        png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
        with open(shot, "wb") as f:
            f.write(png)
        print(json.dumps({"state": state, "tcp_rows": rows, "screenshot_bytes": len(png)}))
    finally:
        stop(proc)
        shutil.rmtree(profile, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    """Ends chromium and every helper it started: asked first (it then removes what it made),
    killed if it has not gone within 10 s."""
    for sig, limit in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its helpers may still be ending.
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


if __name__ == "__main__":
    main()
