"""A scriptable fake of GLM's chat endpoint for ``httpx.MockTransport`` (a fake, not a mock)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

Reply = httpx.Response | Callable[[dict[str, Any]], httpx.Response]


def completion(content: str | None, *, finish_reason: str = "stop", prompt_tokens: int = 100,
               completion_tokens: int = 20, tool_args: str | None = None) -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_args is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "record_extraction", "arguments": tool_args}}]}
    body = {"id": "task-1", "request_id": "r", "created": 1, "model": "glm-4-air-250414",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    return httpx.Response(200, content=orjson.dumps(body))


def glm_error(status: int, code: str, message: str = "error") -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps({"error": {"code": code, "message": message}}))


@dataclass
class FakeGLM:
    """Answers from a script (consumed in order), then from ``default`` for every further call."""

    default: Reply | None = None
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        self.requests.append(body)
        self.headers.append(request.headers)
        reply = self.script.pop(0) if self.script else self.default
        if reply is None:
            raise AssertionError("FakeGLM: no scripted reply left")
        return reply(body) if callable(reply) else reply

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def document_of(body: dict[str, Any]) -> str:
    user = body["messages"][1]["content"]
    found = re.search(r"<document>\n?(.*?)\n?</document>", user, re.DOTALL)
    return found.group(1) if found else ""
