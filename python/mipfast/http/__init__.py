"""The HTTP clients people already use, over the stack, unmodified.

- ``http.client``: :class:`mipfast.http.client.HTTPConnection` / ``HTTPSConnection``
- ``urllib3``: :func:`mipfast.http.urllib3.pool_manager` (a ``urllib3.PoolManager``)
- ``requests``: :func:`mipfast.http.requests.session` (a ``requests.Session``), or mount
  :class:`mipfast.http.requests.StackAdapter` yourself
- ``httpx``: :func:`mipfast.http.httpx.client` / ``async_client``, or the transports
  ``StackTransport`` / ``AsyncStackTransport`` for ``httpx.Client(transport=...)``

Each needs only its own library installed (``pip install mipfast[requests]`` or ``[httpx]``).
Errors are each library's own (``requests.ConnectionError``, ``httpx.ConnectTimeout``…).
Proxies are not supported: the connection goes from the stack to the origin.
"""
