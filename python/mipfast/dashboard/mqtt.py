"""The dashboard's MQTT console: the device connects to a broker through the stack
(paho-mqtt, its socket a genuine one from :mod:`mipfast.bridge`), publishes its status
under ``TOPIC/status`` every ``status_every`` seconds, subscribes to ``TOPIC/#``, keeps the
last messages for the page, and publishes what a logged-in user sends. paho reconnects
with backoff (1 s doubling to 30 s) when the broker goes away.

paho opens its socket in ``Client._create_socket_connection``; :class:`_StackClient`
overrides that one method (paho 2.x) to open the connection through the stack instead.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import paho.mqtt.client as paho

from .. import bridge

log = logging.getLogger("mipfast.mqtt")

KEEP = 100  # messages kept for the page
MAX_PAYLOAD_SHOWN = 4096


def parse_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` → (host, port); ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--mqtt takes mqtt://HOST[:PORT], not {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    return parts.hostname, port


class _StackClient(paho.Client):
    """A paho client whose TCP connection goes through a mipfast stack."""

    def __init__(self, stack: Any, **kwargs: Any) -> None:
        super().__init__(paho.CallbackAPIVersion.VERSION2, **kwargs)
        self._mip_stack = stack

    def _create_socket_connection(self) -> Any:
        conn = self._mip_stack.connect((self._host, self._port), self._connect_timeout)
        return bridge.socket_for(conn)


class MqttConsole:
    def __init__(
        self,
        stack: Any,
        url: str,
        topic: str = "mipfast/device",
        status: Callable[[], dict[str, Any]] | None = None,
        status_every: float = 10.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.host, self.port = parse_url(url)
        self.topic = topic.rstrip("/") or "mipfast"
        self._status = status
        self.status_every = status_every
        self._on_change = on_change or (lambda: None)
        self._lock = threading.Lock()
        self._messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP)
        self.connected = False
        self.connects = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._client = _StackClient(stack, client_id=f"mipfast-{stack.mac.replace(':', '')}")
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        self._client.on_connect_fail = self._connect_failed
        self._status_thread = threading.Thread(
            target=self._publish_status, name="mipfast-mqtt-status", daemon=True
        )

    # -- life --

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._status_thread.start()

    def close(self) -> None:
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (its thread) --

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._note_error(f"broker refused: {reason}")
            return
        with self._lock:
            self.connected = True
            self.connects += 1
            self.last_error = None
        client.subscribe(f"{self.topic}/#")
        client.subscribe(self.topic)
        log.info("MQTT: connected to %s:%d, topic %s", self.host, self.port, self.topic)
        self._on_change()

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was = self.connected
            self.connected = False
            if not self._stop.is_set():
                self.last_error = f"disconnected: {reason}"
        if was:
            log.warning("MQTT: lost %s:%d (%s); reconnecting", self.host, self.port, reason)
        self._on_change()

    def _connect_failed(self, client: Any, userdata: Any) -> None:
        self._note_error("cannot reach the broker")

    def _note_error(self, text: str) -> None:
        with self._lock:
            self.connected = False
            self.last_error = text
        self._on_change()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        self._keep("in", msg.topic, msg.payload, msg.qos, msg.retain)

    # -- what the page sees and does --

    def _keep(self, direction: str, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        try:
            text = payload[:MAX_PAYLOAD_SHOWN].decode()
        except UnicodeDecodeError:
            text = payload[:MAX_PAYLOAD_SHOWN].hex()
        entry = {
            "time": time.time(),
            "direction": direction,
            "topic": topic,
            "payload": text,
            "size": len(payload),
            "qos": qos,
            "retain": retain,
        }
        with self._lock:
            self._messages.append(entry)
        self._on_change()

    def publish(self, payload: str, topic: str | None = None) -> None:
        """Publishes to ``topic`` (default: the console's topic, which must prefix it)."""
        topic = topic or self.topic
        if topic != self.topic and not topic.startswith(self.topic + "/"):
            raise ValueError(f"topics are under {self.topic}/")
        if any(c in topic for c in "#+\0"):
            raise ValueError("no wildcards in a topic to publish to")
        if not self.connected:
            raise ConnectionError("not connected to the broker")
        data = payload.encode()
        info = self._client.publish(topic, data, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(paho.error_string(info.rc))
        self._keep("out", topic, data, 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "broker": f"{self.host}:{self.port}",
                "topic": self.topic,
                "connected": self.connected,
                "connects": self.connects,
                "error": self.last_error,
                "messages": list(self._messages),
            }

    def _publish_status(self) -> None:
        while not self._stop.wait(self.status_every if self.connected else 0.5):
            if self.connected and self._status is not None:
                try:
                    body = json.dumps(self._status(), separators=(",", ":")).encode()
                    self._client.publish(f"{self.topic}/status", body, qos=0, retain=True)
                except (OSError, ValueError) as e:
                    log.debug("MQTT status: %s", e)
