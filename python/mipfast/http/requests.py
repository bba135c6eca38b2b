"""``requests`` over the stack: a transport adapter, or a session with it mounted.

s = mipfast.http.requests.session(stack)
r = s.get("https://peer.test/", timeout=5)
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .urllib3 import StackPoolManager

__all__ = ["StackAdapter", "session"]


class StackAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections go through ``stack``."""

    def __init__(self, stack: Any, **kwargs: Any) -> None:
        self.stack = stack
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = StackPoolManager(
            self.stack, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise requests.exceptions.InvalidProxyURL("proxies are not supported over mipfast")


def session(stack: Any, **adapter_kwargs: Any) -> requests.Session:
    """A ``requests.Session`` with every http:// and https:// request through ``stack``.

    Proxy settings from the environment are ignored (``trust_env`` is off).
    """
    s = requests.Session()
    s.trust_env = False
    adapter = StackAdapter(stack, **adapter_kwargs)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
