"""HTTP client cost alone: the same bodies, the same emulator (instant answers), three clients.

    .venv/bin/python -m benchmarks.bench_clients --requests 3000 --concurrency 50

Not part of ``make bench``; it isolates the transport share of bench_overhead's CPU per row. Each
client sends every body through an ``asyncio.Semaphore`` and parses the answer with orjson:
``aiohttp`` (a bare ``ClientSession``), ``httpx+aiohttp`` (the pipeline's ``build_http_client``: the
httpx API over the httpx-aiohttp transport) and ``httpx`` (the stock httpcore pool). CPU is this
process's ``time.process_time`` over the sends only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson

from benchmarks.common import emulator, fmt, load_average, make_tickets, render_bodies
from pipeline.glm.http import build_http_client

Send = Callable[[bytes], Awaitable[None]]
HEADERS = {"Content-Type": "application/json"}


async def with_aiohttp(url: str, bodies: list[bytes], concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 8)) as session:

        async def send(body: bytes) -> None:
            async with session.post(url, data=body, headers=HEADERS) as response:
                orjson.loads(await response.read())

        await gated(send, bodies, concurrency)


async def with_httpx(url: str, bodies: list[bytes], concurrency: int, transport: str) -> None:
    client = build_http_client(concurrency=concurrency, connect_timeout_s=8, read_timeout_s=60,
                               transport=transport)  # type: ignore[arg-type]

    async def send(body: bytes) -> None:
        response = await client.post(url, content=body, headers=HEADERS)
        orjson.loads(response.content)

    try:
        await gated(send, bodies, concurrency)
    finally:
        await client.aclose()


async def gated(send: Send, bodies: list[bytes], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: bytes) -> None:
        async with gate:
            await send(body)

    await asyncio.gather(*(one(body) for body in bodies))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    bodies = render_bodies(make_tickets(args.requests))
    print(f"HTTP clients: {args.requests} requests, C={args.concurrency}, instant answers ({load_average()})")
    with emulator(args.concurrency, "fixed:0") as emu:
        url = emu.base_url + "/chat/completions"
        clients: dict[str, Callable[[], Awaitable[None]]] = {
            "aiohttp": lambda: with_aiohttp(url, bodies, args.concurrency),
            "httpx+aiohttp": lambda: with_httpx(url, bodies, args.concurrency, "aiohttp"),
            "httpx": lambda: with_httpx(url, bodies, args.concurrency, "httpx"),
        }
        for name, run in clients.items():
            emu.reset()
            started, cpu = time.perf_counter(), time.process_time()
            asyncio.run(run())  # type: ignore[arg-type]
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            rate = args.requests / wall
            print(f"  {name:<14} {fmt(1000 * cpu / args.requests)} ms CPU/request  {fmt(rate, 1)} req/s")


if __name__ == "__main__":
    main()
