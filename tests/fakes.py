"""A scriptable fake of GLM's chat endpoint for ``httpx.MockTransport`` (a fake, not a mock).

It pauses like a network: every answer is awaited for ``delay_s`` (a number, or a function of the
request body), so requests of a concurrent run really overlap on the "wire" and ``max_in_flight``
tells how many did at once. A reply may be :data:`HANG`: the request stays on the wire until the
caller cancels it (a hung connection that only a read timeout or a stop would end).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson


class _Hang:
    """The reply of a request that never gets an answer."""

    def __repr__(self) -> str:
        return "HANG"


HANG = _Hang()
Reply = httpx.Response | _Hang | Callable[[dict[str, Any]], "httpx.Response | _Hang"]
Delay = float | Callable[[dict[str, Any]], float]
DEFAULT_DELAY_S = 0.002


def completion(content: str | None, *, finish_reason: str = "stop", prompt_tokens: int = 100,
               completion_tokens: int = 20, tool_args: str | None = None, cached_tokens: int = 0) -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_args is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "record_extraction", "arguments": tool_args}}]}
    body = {"id": "task-1", "request_id": "r", "created": 1, "model": "glm-4-air-250414",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached_tokens}}}
    return httpx.Response(200, content=orjson.dumps(body))


def glm_error(status: int, code: str, message: str = "error") -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps({"error": {"code": code, "message": message}}))


@dataclass
class FakeGLM:
    """Answers from a script (consumed in order), then from ``default`` for every further call.

    ``requests`` and ``headers`` record what arrived (in arrival order), ``answered`` the bodies
    answered (in the order the answers left); ``in_flight`` is how many
    requests are on the wire now, ``max_in_flight`` the most at once; ``cancelled`` counts requests
    whose caller gave up while they were on the wire."""

    default: Reply | None = None
    script: list[Reply] = field(default_factory=list)
    delay_s: Delay = DEFAULT_DELAY_S
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)
    answered: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        self.requests.append(body)
        self.headers.append(request.headers)
        reply = self.script.pop(0) if self.script else self.default
        if reply is None:
            raise AssertionError("FakeGLM: no scripted reply left")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = reply(body) if callable(reply) else reply
            await asyncio.sleep(self.delay_s(body) if callable(self.delay_s) else self.delay_s)
            if isinstance(answer, _Hang):
                await asyncio.Event().wait()  # until the caller cancels
                raise AssertionError("unreachable")
            self.answered.append(body)
            return answer
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def document_of(body: dict[str, Any]) -> str:
    user = body["messages"][1]["content"]
    found = re.search(r"<document>\n?(.*?)\n?</document>", user, re.DOTALL)
    return found.group(1) if found else ""


#: What a :func:`serve_glm` endpoint answers a request body with: (content, prompt tokens, completion tokens).
Answerer = Callable[[dict[str, Any]], tuple[str, int, int]]


@contextmanager
def serve_glm(answer: Answerer) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible chat endpoint over real HTTP on 127.0.0.1 that is not the emulator (its
    probe for one gets 404), for a CLI run in a subprocess: yields its base URL and the request
    bodies it received, and answers each with ``answer``."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            content, prompt, completion = answer(body)
            self._send(200, orjson.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}))

        def do_GET(self) -> None:
            self._send(404, b"")

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
