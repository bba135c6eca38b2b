"""What ``socket.socket`` composes from its own calls, over a mipfast Connection: file objects
(``makefile``), ``sendfile`` and the scatter/gather calls (``sendmsg``, ``recvmsg``)."""

from __future__ import annotations

import errno
import io
import socket
from typing import Any

#: A sendfile block: large enough that a megabyte is a few calls into the engine.
_SENDFILE_BLOCK = 256 * 1024


def makefile(
    conn: Any,
    mode: str = "r",
    buffering: int | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> Any:
    """The same layering as the stdlib: SocketIO, then a buffer, then text."""
    if not set(mode) <= {"r", "w", "b"}:
        raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
    writing = "w" in mode
    reading = "r" in mode or not writing
    binary = "b" in mode
    rawmode = ("r" if reading else "") + ("w" if writing else "")
    raw = socket.SocketIO(conn, rawmode)  # type: ignore[arg-type]  # "r", "w" or "rw"
    if buffering is None:
        buffering = -1
    if buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        if not binary:
            raise ValueError("unbuffered streams must be binary")
        return raw
    buffer: io.BufferedIOBase
    if reading and writing:
        buffer = io.BufferedRWPair(raw, raw, buffering)
    elif reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    text = io.TextIOWrapper(buffer, encoding, errors, newline)  # type: ignore[type-var]
    text.mode = mode  # type: ignore[misc]
    return text


def sendfile(conn: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """``socket.sendfile`` over ``conn``: ``count`` bytes (or all) from ``offset`` in the file,
    read in blocks and sent, as the stdlib's ``os.sendfile`` path reads a regular file; the file
    is left positioned after what was sent."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if conn.gettimeout() == 0:
        raise ValueError("non-blocking sockets are not supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if offset or _seekable(file):
        file.seek(offset)  # from the file's start, as os.sendfile reads a regular file
    total = 0
    try:
        while count is None or total < count:
            want = _SENDFILE_BLOCK if count is None else min(_SENDFILE_BLOCK, count - total)
            chunk = file.read(want)  # a fresh bytes: the send buffer holds it without a copy
            if not chunk:
                break
            conn.sendall(chunk)
            total += len(chunk)
        return total
    finally:
        if total > 0 and hasattr(file, "seek"):
            file.seek(offset + total)


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def sendmsg(conn: Any, buffers: Any, ancdata: Any = None, flags: int = 0, address: Any = None) -> int:
    """``socket.sendmsg`` on a connection: the buffers' bytes in order, as one ``send``. A
    connected stream ignores ``address``, as Linux's TCP does; it carries no ancillary data."""
    if ancdata is not None and list(ancdata):
        raise OSError(errno.EOPNOTSUPP, "ancillary data is not supported on a TCP connection")
    data = b"".join(buffers)  # any bytes-like items, as the stdlib takes them
    return int(conn.send(data, flags))


Message = tuple[Any, list[Any], int, None]  # (data or size, ancillary data, flags, address)


def recvmsg(conn: Any, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Message:
    """``socket.recvmsg`` on a connection: (data, no ancillary data, no flags, no address)."""
    if bufsize < 0 or ancbufsize < 0:
        raise ValueError("negative buffer size in recvmsg()")
    return conn.recv(bufsize, flags), [], 0, None


def recvmsg_into(conn: Any, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Message:
    """``socket.recvmsg_into`` on a connection: one read, scattered over ``buffers`` in order."""
    if ancbufsize < 0:
        raise ValueError("negative buffer size in recvmsg_into()")
    views = [memoryview(b).cast("B") for b in buffers]
    if any(v.readonly for v in views):
        raise TypeError("recvmsg_into() argument 1 must be an iterable of writable buffers")
    if len(views) == 1:
        return conn.recv_into(views[0], 0, flags), [], 0, None
    data = conn.recv(sum(len(v) for v in views), flags)
    at = 0
    for v in views:
        part = data[at : at + len(v)]
        v[: len(part)] = part
        at += len(part)
    return len(data), [], 0, None
