"""What ``import uvloop`` gives under :mod:`mipfast.patch`: asyncio's own loop, in uvloop's names.

uvloop's loop opens and drives its sockets in C (libuv), where the patched ``socket.socket``
never sees them, so a server or client on it would silently use the kernel's network instead
of the stack. uvicorn, for one, takes uvloop whenever it is installed (``uvicorn[standard]``).
Under the patch ``import uvloop`` therefore finds this module, whose loops are asyncio's
selector loops, which the patch routes; it says so once in the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from importlib import metadata
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")

try:
    __version__ = metadata.version("uvloop")
except metadata.PackageNotFoundError:  # (only stood in for when installed, but a package may lie)
    __version__ = "0"

logging.getLogger("mipfast.patch").warning(
    "uvloop drives its sockets in C, out of the stack's reach: asyncio's own loop stands in for it"
)

#: Tells :mod:`mipfast.patch` that this is not uvloop.
STANDS_IN = True

#: uvloop's loop class; asyncio's selector loop here.
Loop = asyncio.SelectorEventLoop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """uvloop's policy: asyncio's default one, whose loops the patch routes."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    return Loop()


def install() -> None:
    """uvloop's ``install()``: makes the policy the default one."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(
    main: Coroutine[Any, Any, _T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = new_event_loop,
    debug: bool | None = None,
    **_: Any,
) -> _T:
    """uvloop's ``run()``: ``asyncio.run`` on a loop from ``loop_factory``."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            return runner.run(main)
    return asyncio.run(main, debug=bool(debug))
