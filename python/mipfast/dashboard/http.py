"""A small HTTP/1.1 server on asyncio streams, with h11 doing the protocol: keep-alive and
pipelining (one request at a time, in order), Content-Length or chunked bodies, 400 for
malformed requests, 413 for bodies over the limit, deadlines against slow clients, a cap
on concurrent clients, and the WebSocket upgrade handed over with the bytes that follow
it. Nothing a client sends can stop the server: every connection's errors end that
connection only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import h11

log = logging.getLogger("mipfast.dashboard")

SERVER_NAME = b"mipfast"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    client: tuple[str, int]

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                jar[name] = value
        return jar

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"the body is not JSON: {e}") from None

    @property
    def wants_websocket(self) -> bool:
        return (
            self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
        )


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, body, "application/json", headers or [])

    @classmethod
    def error(cls, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls.json({"error": message}, status, headers)


@dataclass
class Upgrade:
    """A handler's answer to a WebSocket handshake: ``run`` gets the stream after the
    101 response has gone out, with the bytes that already followed the request."""

    headers: list[tuple[str, str]]
    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


Handler = Callable[[Request], Awaitable["Response | Upgrade"]]


@dataclass
class Limits:
    max_clients: int = 64
    #: From the first byte of a request to its last: a slow client gets 408 and is closed.
    request_timeout: float = 10.0
    #: How long a keep-alive connection may wait between requests.
    idle_timeout: float = 30.0
    max_body: int = 64 * 1024
    max_header: int = 16 * 1024


class _Closed(Exception):
    """The client went away or broke the protocol; the connection ends."""


class HttpServer:
    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.clients = 0  # connected now
        self.connections = 0  # served, ever
        self.requests = 0
        self.refused = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection (``start_server``'s callback)."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self.clients >= self.limits.max_clients:
            self.refused += 1
            await _refuse(reader, writer)
            return
        self.clients += 1
        self.connections += 1
        try:
            await self._serve(reader, writer, (str(peer[0]), int(peer[1])))
        except _Closed as e:
            log.debug("client %s:%s: %s", peer[0], peer[1], e)
            await _linger(reader, writer)
        except (ConnectionError, OSError, asyncio.TimeoutError) as e:
            log.debug("client %s:%s: %s", peer[0], peer[1], e or type(e).__name__)
        except Exception:
            log.exception("client %s:%s", peer[0], peer[1])
        finally:
            self.clients -= 1
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: tuple[str, int]
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header)
        loop = asyncio.get_running_loop()
        while True:
            deadline: float | None = None

            async def next_event() -> Any:
                nonlocal deadline
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as e:
                        await self._fail(conn, writer, e.error_status_hint, str(e))
                        raise _Closed("malformed request") from None
                    if event is not h11.NEED_DATA:
                        return event
                    if deadline is None and conn.their_state is h11.IDLE and not _buffered(conn):
                        wait = self.limits.idle_timeout
                    else:
                        if deadline is None:
                            deadline = loop.time() + self.limits.request_timeout
                        wait = deadline - loop.time()
                    try:
                        data = await asyncio.wait_for(reader.read(65536), max(wait, 0))
                    except asyncio.TimeoutError:
                        if deadline is not None:
                            await self._fail(conn, writer, 408, "request timeout")
                        raise _Closed("timed out") from None
                    if deadline is None and data:
                        deadline = loop.time() + self.limits.request_timeout
                    conn.receive_data(data)

            event = await next_event()
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _Closed(f"unexpected {event!r}")
            headers = _headers(event.headers)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.limits.max_body:
                await self._fail(conn, writer, 413, "request body too large")
                raise _Closed("body too large")
            body = bytearray()
            while True:
                part = await next_event()
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > self.limits.max_body:
                        await self._fail(conn, writer, 413, "request body too large")
                        raise _Closed("body too large")
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    raise _Closed(f"unexpected {part!r}")
            url = urlsplit(event.target.decode("latin-1"))
            request = Request(
                event.method.decode("ascii", "replace"),
                url.path or "/",
                parse_qs(url.query),
                headers,
                bytes(body),
                client,
            )
            self.requests += 1
            try:
                answer = await self.handler(request)
            except Exception:
                log.exception("handler for %s %s", request.method, request.path)
                answer = Response.error(500, "internal error")
            if isinstance(answer, Upgrade):
                if conn.their_state is not h11.MIGHT_SWITCH_PROTOCOL:
                    await self._send(conn, writer, Response.error(400, "not an upgrade request"))
                else:
                    writer.write(
                        conn.send(h11.InformationalResponse(status_code=101, headers=answer.headers))
                    )
                    await writer.drain()
                    rest, _closed = conn.trailing_data
                    await answer.run(reader, writer, rest)
                    return
            else:
                await self._send(conn, writer, answer)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, r: Response) -> None:
        headers = [
            ("Content-Type", r.content_type),
            ("Content-Length", str(len(r.body))),
            ("Server", SERVER_NAME.decode()),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
            *r.headers,
        ]
        # One write: head, body and end go out as one segment (on any transport,
        # with TCP_NODELAY set, each write is a segment of its own).
        pieces = [conn.send(h11.Response(status_code=r.status, headers=headers))]
        if r.body:
            pieces.append(conn.send(h11.Data(data=r.body)))
        pieces.append(conn.send(h11.EndOfMessage()))
        writer.write(b"".join(p for p in pieces if p))
        await writer.drain()

    async def _fail(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, why: str) -> None:
        """Answers ``status`` if the protocol still lets us answer, then the connection closes."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        r = Response.error(status, why, [("Connection", "close")])
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError, OSError):
            await self._send(conn, writer, r)


def _headers(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _buffered(conn: h11.Connection) -> bool:
    """Bytes of a pipelined next request already received."""
    return bool(conn.trailing_data[0])


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: float = 2.0) -> None:
    """A lingering close (RFC 9112 §9.6): after an error answer, stop sending and read
    what the client still sends, for a while, so that closing with unread bytes does not
    reset the connection before the client has read the answer."""
    with contextlib.suppress(ConnectionError, OSError, RuntimeError, asyncio.TimeoutError):
        if writer.can_write_eof():
            writer.write_eof()
        end = asyncio.get_running_loop().time() + limit
        while (left := end - asyncio.get_running_loop().time()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                break


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """503 to a client over the limit, closed lingering: its request, unread, would
    otherwise turn the close into a reset that can destroy the answer before it is read."""
    body = b'{"error":"too many clients"}'
    writer.write(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
        await asyncio.wait_for(writer.drain(), 5)
    await _linger(reader, writer, limit=1.0)
    writer.close()
