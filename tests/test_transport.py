"""The run's HTTP transport (httpx API over aiohttp) against real local servers: what reaches the
server, what comes back, and how every network failure surfaces as httpx's exception and then as
the client's transient error."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from pipeline.glm.client import Endpoint, GLMClient
from pipeline.glm.errors import TransientError
from pipeline.glm.transport import AiohttpTransport, build_transport
from tests.fakes import completion

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY = "sk-transport-secret-0123456789"


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """A catch-all aiohttp server on 127.0.0.1; yields its origin and what it received."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        bodies.append(await request.read())
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen, bodies
    finally:
        await runner.cleanup()


async def answer(request: web.Request) -> web.StreamResponse:
    return web.Response(body=completion('{"ok": true}').content, content_type="application/json",
                        headers={"X-Request-Id": "srv-1"})


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(2)
    return await answer(request)


async def drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


def post(origin: str, body: bytes = b'{"a": 1}', read_s: float = 5.0) -> httpx.Request:
    timeout = httpx.Timeout(read_s, connect=2.0).as_dict()
    return httpx.Request("POST", origin + "/api/paas/v4/chat/completions", content=body,
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
                         extensions={"timeout": timeout})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_request_reaches_the_server_whole_and_the_answer_comes_back() -> None:
    async def go() -> tuple[httpx.Response, list[web.Request], list[bytes]]:
        async with serving(answer) as (origin, seen, bodies), AiohttpTransport(max_connections=4) as transport:
            responses = [await transport.handle_async_request(post(origin, b'{"n": %d}' % i)) for i in range(3)]
            return responses[-1], seen, bodies

    response, seen, bodies = asyncio.run(go())
    assert response.status_code == 200 and response.headers["x-request-id"] == "srv-1"
    assert orjson.loads(response.content)["choices"][0]["message"]["content"] == '{"ok": true}'
    assert bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert [r.method for r in seen] == ["POST"] * 3 and seen[0].path == "/api/paas/v4/chat/completions"
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["Content-Type"] == "application/json"


def test_a_compressed_answer_is_decoded_once() -> None:
    plain = completion('{"x": "long answer"}').content

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(plain), headers={"Content-Encoding": "gzip",
                                                               "Content-Type": "application/json"})

    async def go() -> httpx.Response:
        async with serving(gzipped) as (origin, _, _), AiohttpTransport(max_connections=2) as transport:
            response = await transport.handle_async_request(post(origin))
            await response.aread()
            return response

    response = asyncio.run(go())
    assert response.content == plain and "content-encoding" not in response.headers


def test_error_statuses_come_back_as_responses_not_exceptions() -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"code": "1302", "message": "busy"}}, status=429)

    async def go() -> httpx.Response:
        async with serving(busy) as (origin, _, _), AiohttpTransport(max_connections=2) as transport:
            return await transport.handle_async_request(post(origin))

    response = asyncio.run(go())
    assert response.status_code == 429 and orjson.loads(response.content)["error"]["code"] == "1302"


def test_connection_refused_is_a_connect_error_without_the_key() -> None:
    async def go() -> None:
        async with AiohttpTransport(max_connections=2) as transport:
            await transport.handle_async_request(post(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(httpx.ConnectError) as caught:
        asyncio.run(go())
    assert KEY not in str(caught.value) and caught.value.request is not None


def test_a_slow_answer_is_a_read_timeout() -> None:
    async def go() -> None:
        async with serving(slow) as (origin, _, _), AiohttpTransport(max_connections=2) as transport:
            await transport.handle_async_request(post(origin, read_s=0.2))

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(go())


def test_a_dropped_connection_is_a_transport_error() -> None:
    async def go() -> None:
        async with serving(drop) as (origin, _, _), AiohttpTransport(max_connections=2) as transport:
            await transport.handle_async_request(post(origin))

    with pytest.raises(httpx.TransportError):
        asyncio.run(go())


@pytest.mark.parametrize(("handler_kind", "code"), [("refused", "network"), ("slow", "timeout"), ("drop", "network")])
def test_the_client_turns_network_failures_into_transient_errors(handler_kind: str, code: str) -> None:
    async def go() -> None:
        timeout = httpx.Timeout(0.2, connect=2.0)
        async with AiohttpTransport(max_connections=2) as transport:
            if handler_kind == "refused":
                client = GLMClient(transport, Endpoint(f"http://127.0.0.1:{free_port()}", KEY), timeout)
                await client.chat({"model": "m", "messages": []})
                return
            async with serving(slow if handler_kind == "slow" else drop) as (origin, _, _):
                client = GLMClient(transport, Endpoint(origin, KEY), timeout)
                await client.chat({"model": "m", "messages": []})

    with pytest.raises(TransientError) as caught:
        asyncio.run(go())
    assert caught.value.code == code and KEY not in str(caught.value)


def test_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    async def as_proxy(request: web.Request) -> web.StreamResponse:
        return web.json_response({"via": "proxy", "target": str(request.url)})

    async def go(no_proxy: str | None) -> tuple[dict[str, Any], int, int]:
        async with serving(answer) as (origin, direct, _), serving(as_proxy) as (proxy, proxied, _):
            monkeypatch.setenv("HTTP_PROXY", proxy)
            monkeypatch.setenv("http_proxy", proxy)
            for name in ("NO_PROXY", "no_proxy"):
                if no_proxy is None:
                    monkeypatch.delenv(name, raising=False)
                else:
                    monkeypatch.setenv(name, no_proxy)
            async with build_transport(concurrency=2) as transport:
                response = await transport.handle_async_request(post(origin))
                return orjson.loads(response.content), len(direct), len(proxied)

    body, direct, proxied = asyncio.run(go(None))
    assert (direct, proxied) == (0, 1) and body["via"] == "proxy" and body["target"].endswith("/chat/completions")
    body, direct, proxied = asyncio.run(go("127.0.0.1"))
    assert (direct, proxied) == (1, 0) and "choices" in body


def test_the_stock_httpx_transport_is_still_selectable() -> None:
    async def go() -> int:
        async with serving(answer) as (origin, _, _), build_transport(concurrency=2, transport="httpx") as transport:
            response = await transport.handle_async_request(post(origin))
            await response.aread()
            return response.status_code

    assert asyncio.run(go()) == 200
