"""Peer baseline: the script users write — the official ``openai`` client, ``asyncio.Semaphore``, ``gather``.

Self-contained on purpose (stdlib, ``openai`` and the sibling ``peer_io.py``) so it runs from a
separate venv holding the ``bench`` extra. ``bench_peers`` feeds it a JSONL file of
``{"id": …, "body": {…}}`` (the request bodies glm-extract renders, so both send identical prompts)
and reads the last line it prints::

    python benchmarks/peer_openai.py --requests in.jsonl --output out.jsonl --base-url URL --concurrency 50
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from openai import AsyncOpenAI
from peer_io import read_args  # a sibling: this script runs by path


async def extract_all(rows: list[dict[str, Any]], base_url: str, concurrency: int) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=base_url, api_key="not-needed-for-the-emulator", max_retries=5)
    gate = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> dict[str, Any]:
        body = row["body"]
        async with gate:
            try:
                response = await client.chat.completions.create(
                    model=body["model"], messages=body["messages"], max_tokens=body["max_tokens"],
                    response_format=body["response_format"], extra_body={"do_sample": False},
                )  # fmt: skip
                return {"id": row["id"], "answer": json.loads(response.choices[0].message.content or "null")}
            except Exception as exc:  # noqa: BLE001 (the typical user script: log and move on)
                return {"id": row["id"], "error": repr(exc)[:200]}

    try:
        return await asyncio.gather(*(one(row) for row in rows))
    finally:
        await client.close()


def main() -> None:
    args, rows = read_args()
    started = time.perf_counter()
    results = asyncio.run(extract_all(rows, args.base_url, args.concurrency))
    seconds = time.perf_counter() - started
    with args.output.open("w") as sink:
        for result in results:
            sink.write(json.dumps(result, ensure_ascii=False) + "\n")
    errors = sum("error" in r for r in results)
    print(json.dumps({"rows": len(rows), "seconds": seconds, "ok": len(rows) - errors, "errors": errors}))


if __name__ == "__main__":
    main()
