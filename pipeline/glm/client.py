"""One chat-completions attempt over an injected ``httpx.AsyncBaseTransport``.

The client knows the wire format and nothing else: no retries (``pipeline.glm.retry``), no
concurrency (``pipeline.limiter``). Foreign exceptions are translated here, at one boundary.
It builds the ``httpx.Request`` itself and hands it to the transport: ``httpx.AsyncClient``'s own
layer (URL merging, cookie jar, auth and redirect loops) costs more CPU a request than aiohttp's
own and does nothing for this API (docs/decisions.md D17, figures in docs/performance.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import httpx
import orjson

from pipeline.glm.errors import ApiError, TransientError, error_from_body
from pipeline.redact import Redactor, without_credentials
from pipeline.tokens import count_prompt_tokens, count_text_tokens


@dataclass(frozen=True)
class ChatAnswer:
    """What one 200 answer carries that the pipeline uses."""

    content: str | None  # message text, or the tool call's arguments in tools mode
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    request_id: str
    latency_ms: float
    raw: bytes
    cached_tokens: int = 0  # of prompt_tokens, served from the platform's prefix cache
    synthetic: bool = False  # answered by an emulator (its X-GLM-Emulator header), not by a model
    usage_counted: bool = False  # the answer had no usable usage: the tokens are our rule's count


#: What an emulator puts on every response; an answer carrying it is synthetic wherever it came from.
SYNTHETIC_HEADER = "X-GLM-Emulator"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the API; the key is only ever put into a header."""

    base_url: str
    api_key: str | None = None

    def __repr__(self) -> str:  # never show the key
        return f"Endpoint(base_url={without_credentials(self.base_url)!r}, api_key={'***' if self.api_key else None})"


DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=8.0)


def _user_agent() -> str:
    try:
        return f"glm-extract/{metadata.version('glm-extract')}"
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "glm-extract"


USER_AGENT = _user_agent()


class GLMClient:
    """Sends one request per call to ``chat``; a fresh ``request_id`` for every attempt."""

    def __init__(self, transport: httpx.AsyncBaseTransport, endpoint: Endpoint,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self._transport = transport
        self._url = httpx.URL(endpoint.base_url.rstrip("/") + "/chat/completions")  # parsed once
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self._headers = httpx.Headers(headers)
        self._extensions = {"timeout": timeout.as_dict()}
        self._redact = Redactor.for_endpoint(endpoint.base_url, endpoint.api_key)  # a server may echo them

    async def chat(self, body: Mapping[str, Any]) -> ChatAnswer:
        """POST the body once; return the answer or raise an :class:`ApiError` subclass."""
        request_id = uuid.uuid4().hex
        payload = orjson.dumps({**body, "request_id": request_id})
        started = time.perf_counter()
        request = httpx.Request("POST", self._url, headers=self._headers, content=payload,
                                extensions=self._extensions)
        try:
            response = await self._transport.handle_async_request(request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise TransientError(f"{type(exc).__name__}", code="timeout", request_id=request_id) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}", code="network", request_id=request_id) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if self._redact:
            content = self._redact.raw(content)
        if response.status_code != 200:
            raise error_from_body(response.status_code, content, request_id)
        return parse_answer(content, request_id, latency_ms, synthetic=SYNTHETIC_HEADER in response.headers,
                            body=body)


def parse_answer(raw: bytes, request_id: str, latency_ms: float, *, synthetic: bool = False,
                 body: Mapping[str, Any] | None = None) -> ChatAnswer:
    """Read a 200 body; a body that is not a completion is a transient fault of the server.

    Usage that is missing or unusable (not whole numbers, negative, more cached than prompt tokens:
    a gateway that strips or garbles it) is not taken as free: with the request ``body`` at hand the
    tokens are our rule's count of the prompt and of the answer (``usage_counted``), so a budget
    still holds and the bill is not 0."""
    try:
        data = orjson.loads(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        usage = data.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}  # missing, or not an object: unusable
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise TransientError("the 200 body is not a chat completion", code="bad_body",
                             http_status=200, request_id=request_id) from exc
    finish_reason = choice.get("finish_reason")
    if finish_reason == "network_error":
        raise TransientError("model inference failed (finish_reason=network_error)",
                             code="network_error", http_status=200, request_id=request_id)
    content = _content_of(message)
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    cached = _cached_tokens(usage)
    counted = prompt is None or completion is None or cached > prompt
    if counted:
        prompt = count_prompt_tokens(body["messages"], body.get("tools")) if body is not None else 0
        completion = count_text_tokens(content or "")
        cached = 0
    return ChatAnswer(
        content=content,
        finish_reason=finish_reason,
        prompt_tokens=prompt or 0,
        completion_tokens=completion or 0,
        request_id=str(data.get("request_id") or request_id),
        latency_ms=latency_ms,
        raw=raw,
        cached_tokens=cached,
        synthetic=synthetic,
        usage_counted=counted,
    )


def _count(value: object) -> int | None:
    """A token count as usage gives it: a whole number ≥ 0, else None (missing or unusable)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _cached_tokens(usage: Mapping[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return cached if isinstance(cached, int) and not isinstance(cached, bool) and cached > 0 else 0


def _content_of(message: Mapping[str, Any]) -> str | None:
    calls = message.get("tool_calls") or []
    if calls:
        arguments = (calls[0].get("function") or {}).get("arguments")
        if isinstance(arguments, str):
            return arguments
        return orjson.dumps(arguments).decode() if arguments is not None else None
    content = message.get("content")
    return content if isinstance(content, str) else None


__all__ = ["SYNTHETIC_HEADER", "ApiError", "ChatAnswer", "Endpoint", "GLMClient", "parse_answer"]
