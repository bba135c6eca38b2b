"""Whether a kept-alive connection is still good to reuse, asked of the stack."""

from __future__ import annotations

import socket
from typing import Any

from ..tls import TlsConnection


def readable(sock: Any) -> bool:
    """Whether the server closed an idle connection or sent something unasked: what
    connection pools ask before each reuse (urllib3's ``is_connected``, httpcore's
    ``is_readable``). A peek at the stack connection (under TLS, at its raw bytes, as
    ``select`` on a kernel socket sees them), not a ``select`` on a readiness
    descriptor, which the stack would then keep current at every change of the
    connection."""
    conn = sock._conn if isinstance(sock, TlsConnection) else sock
    try:
        conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
