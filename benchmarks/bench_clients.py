"""HTTP client cost alone: the same bodies, the same emulator (instant answers), several clients.

    .venv/bin/python -m benchmarks.bench_clients --requests 5000 --concurrency 50

Not part of ``make bench``; it isolates the transport share of bench_overhead's CPU per row and is the
measurement behind docs/decisions.md D9/D17. Each client sends every body through an
``asyncio.Semaphore`` and parses the answer with orjson:

- ``aiohttp``: a bare ``ClientSession`` (the floor for any Python client here);
- ``pipeline``: what ``GLMClient`` does — an ``httpx.Request`` handed to the run's transport
  (``pipeline.glm.transport.AiohttpTransport``);
- ``AsyncClient.post+pipeline``: the same transport behind ``httpx.AsyncClient.post`` (the client
  layer's own cost: URL merging, cookie jar, auth and redirect loops);
- ``httpx-aiohttp``: the ``httpx-aiohttp`` package's transport behind ``AsyncClient.post`` (only when
  that package is importable, e.g. from the ``bench`` extra);
- ``httpx``: the stock httpcore pool behind ``AsyncClient.post``.

CPU is this process's ``time.process_time`` over the sends only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson

from benchmarks.common import emulator, fmt, gated, load_average, make_tickets, render_bodies
from pipeline.glm.transport import AiohttpTransport, build_transport

HEADERS = {"Content-Type": "application/json"}
TIMEOUT = httpx.Timeout(60, connect=8)


async def with_aiohttp(url: str, bodies: list[bytes], concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 8)) as session:

        async def send(body: bytes) -> None:
            async with session.post(url, data=body, headers=HEADERS) as response:
                orjson.loads(await response.read())

        await gated(send, bodies, concurrency)


async def with_transport(url: str, bodies: list[bytes], concurrency: int) -> None:
    target, headers, extensions = httpx.URL(url), httpx.Headers(HEADERS), {"timeout": TIMEOUT.as_dict()}
    async with AiohttpTransport(max_connections=concurrency + 8) as transport:

        async def send(body: bytes) -> None:
            request = httpx.Request("POST", target, headers=headers, content=body, extensions=extensions)
            response = await transport.handle_async_request(request)
            orjson.loads(await response.aread())

        await gated(send, bodies, concurrency)


async def with_client(url: str, bodies: list[bytes], concurrency: int, transport: httpx.AsyncBaseTransport) -> None:
    target = httpx.URL(url)
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:

        async def send(body: bytes) -> None:
            response = await client.post(target, content=body, headers=HEADERS)
            orjson.loads(response.content)

        await gated(send, bodies, concurrency)


def httpx_aiohttp_transport(concurrency: int) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport as PackageTransport  # type: ignore[import-not-found]

    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    return PackageTransport(limits=limits)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    bodies, c = render_bodies(make_tickets(args.requests)), args.concurrency
    print(f"HTTP clients: {args.requests} requests, C={c}, instant answers ({load_average()})")
    with emulator(c, "fixed:0") as emu:
        url = emu.base_url + "/chat/completions"
        clients: dict[str, Callable[[], Awaitable[None]]] = {
            "aiohttp": lambda: with_aiohttp(url, bodies, c),
            "pipeline": lambda: with_transport(url, bodies, c),
            "AsyncClient.post+pipeline": lambda: with_client(url, bodies, c, build_transport(concurrency=c)),
        }
        if importlib.util.find_spec("httpx_aiohttp") is not None:
            clients["httpx-aiohttp"] = lambda: with_client(url, bodies, c, httpx_aiohttp_transport(c))
        clients["httpx"] = lambda: with_client(url, bodies, c, build_transport(concurrency=c, transport="httpx"))
        for name, run in clients.items():
            emu.reset()
            started, cpu = time.perf_counter(), time.process_time()
            asyncio.run(run())  # type: ignore[arg-type]
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            rate = args.requests / wall
            print(f"  {name:<26} {fmt(1000 * cpu / args.requests)} ms CPU/request  {fmt(rate, 1)} req/s")


if __name__ == "__main__":
    main()
