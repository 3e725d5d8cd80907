"""The run's HTTP transport: an ``httpx.AsyncBaseTransport`` over one aiohttp session.

The pipeline speaks the httpx API (``httpx.Request`` in, ``httpx.Response`` out, httpx's exception
tree), so tests swap in ``httpx.MockTransport``. Underneath, the stock httpcore pool is CPU-hungry
at high concurrency (encode/httpx#3215); aiohttp's pool is not. This transport is
the thin glue between the two, written for one job — small JSON POSTs read whole — and measured
against the ``httpx-aiohttp`` package's general one (docs/decisions.md D9, D17): it looks up the
proxy and converts the URL once per URL (aiohttp's own ``trust_env`` re-reads the environment on
every request), caches the timeout object and reads the body inside the transport, without a
streaming wrapper (the CPU per request of each is in docs/performance.md).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from typing import Literal

import aiohttp
import httpx
import yarl

# aiohttp failure -> httpx class, most specific first (the first match wins)
_ERROR_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.PoolTimeout),  # aiohttp's `connect` budget covers waiting for the pool
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.NetworkError),
    (OSError, httpx.NetworkError),
)

_MAX_ROUTES = 64

# Headers aiohttp already acted on: the body handed to httpx is decoded and of its real length.
_DROPPED = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent through an aiohttp ``ClientSession`` opened on first use (inside the loop)."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None,
                 trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._ssl_context = ssl_context or httpx.create_ssl_context()
        self._trust_env = trust_env  # HTTP(S)_PROXY / NO_PROXY, as httpx would; read once per URL
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[str, tuple[yarl.URL, str | None]] = {}
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in request.headers.raw]
        url, proxy = self._route(request.url)
        try:
            async with session.request(request.method, url, headers=headers, data=request.content or None,
                                       timeout=self._timeout(request), proxy=proxy,
                                       allow_redirects=False) as answer:
                body = await answer.read()
                status, raw_headers = answer.status, answer.raw_headers
        except Exception as exc:  # translated at this one boundary, re-raised as httpx's own
            mapped = _httpx_error(exc)
            if mapped is None:
                raise
            raise mapped(f"{type(exc).__name__}: {exc}", request=request) from exc
        kept = [(key, value) for key, value in raw_headers if key.lower() not in _DROPPED]
        return httpx.Response(status, headers=kept, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl_context)
        # aiohttp's own trust_env re-reads the environment on every request (a third of its CPU
        # here); the proxy is looked up once per URL in `_route` instead
        self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
        return self._session

    def _route(self, url: httpx.URL) -> tuple[yarl.URL, str | None]:
        """The aiohttp URL and proxy for ``url``, worked out once per URL (a run posts to one)."""
        text = str(url)
        route = self._routes.get(text)
        if route is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            route = self._routes[text] = (yarl.URL(text, encoded=True), self._proxy_for(url))
        return route

    def _proxy_for(self, url: httpx.URL) -> str | None:
        if not self._trust_env or urllib.request.proxy_bypass(url.host):
            return None
        return urllib.request.getproxies().get(url.scheme)

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        given = request.extensions.get("timeout") or {}
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
            self._timeouts[key] = found
        return found


def _httpx_error(exc: Exception) -> type[httpx.TransportError] | None:
    """httpx's class for an aiohttp failure; None for an exception that is a bug of ours."""
    for aiohttp_class, httpx_class in _ERROR_MAP:
        if isinstance(exc, aiohttp_class):
            return httpx_class
    return None


def build_transport(*, concurrency: int,
                    transport: Literal["aiohttp", "httpx"] = "aiohttp") -> httpx.AsyncBaseTransport:
    """The transport for ``concurrency`` requests in flight (a few spare connections for stragglers)."""
    if transport == "aiohttp":
        return AiohttpTransport(max_connections=concurrency + 8)
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    return httpx.AsyncHTTPTransport(limits=limits)
