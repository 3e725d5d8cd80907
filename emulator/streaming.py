"""``stream: true``: a completion body as server-sent events, the way GLM streams it.

Each event is ``data: <chunk JSON>``; the content arrives as ``delta`` pieces (a tool call as one
delta), the last chunk carries ``finish_reason`` and ``usage``, and ``data: [DONE]`` ends the stream.
The first piece is sent after the time to the first token, the rest spread over the decode time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

PIECES = 12  # content deltas per answer at most: enough to look like a stream, cheap to serve
DONE = b"data: [DONE]\n\n"


def stream_chunks(completion: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chunks of a completion body (pure): deltas, then the last chunk with finish and usage."""
    head = {key: completion[key] for key in ("id", "request_id", "created", "model") if key in completion}
    choice = completion["choices"][0]
    message = choice["message"]
    deltas: list[dict[str, Any]] = []
    calls = message.get("tool_calls")
    if calls:
        deltas.append({"role": "assistant", "tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]})
    else:
        deltas.extend({"role": "assistant", "content": piece} for piece in split_text(message.get("content") or ""))
    chunks = [{**head, "choices": [{"index": 0, "delta": delta}]} for delta in deltas]
    last: dict[str, Any] = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": choice["finish_reason"]}],
                            "usage": completion["usage"]}  # fmt: skip
    if "content_filter" in completion:
        last["content_filter"] = completion["content_filter"]
    return [*chunks, last]


def split_text(text: str, pieces: int = PIECES) -> list[str]:
    """``text`` in at most ``pieces`` consecutive non-empty parts (one empty part for an empty text)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


async def send_stream(request: web.Request, chunks: Sequence[Mapping[str, Any]], first_at: float, end_at: float,
                      headers: Mapping[str, str]) -> web.StreamResponse:
    """Write the chunks as SSE: the first at loop time ``first_at``, the last by ``end_at``."""
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                       "Cache-Control": "no-cache", **headers})  # fmt: skip
    await asyncio.sleep(max(0.0, first_at - loop.time()))
    await response.prepare(request)
    step = (end_at - first_at) / max(1, len(chunks) - 1)
    for index, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, first_at + index * step - loop.time()))
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(DONE)
    await response.write_eof()
    return response
