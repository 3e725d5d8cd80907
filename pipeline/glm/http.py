"""Build the one ``httpx.AsyncClient`` a run uses.

The stock httpx pool burns 4–18 ms of CPU per request at 64 in flight (httpcore's pool scan);
the ``httpx-aiohttp`` transport keeps the httpx API (so tests keep ``MockTransport``) at < 1 ms.
See docs/decisions.md.
"""

from __future__ import annotations

from typing import Literal

import httpx
from httpx_aiohttp import AiohttpTransport


def build_http_client(
    *,
    concurrency: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    transport: Literal["aiohttp", "httpx"] = "aiohttp",
) -> httpx.AsyncClient:
    """An AsyncClient sized for ``concurrency`` requests in flight."""
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    if transport == "aiohttp":
        return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout)
    return httpx.AsyncClient(limits=limits, timeout=timeout)
