"""One completion body from a request: the answer, what a fault makes of it, and ``max_tokens``.

Pure: the server decides the fault, counts the prompt and asks the cache; this builds the body.
An answer longer than ``max_tokens`` is cut to fit with ``finish_reason = "length"`` and
``completion_tokens = max_tokens``, as GLM does. The ``truncated`` fault is a model that runs on:
it is cut the same way, but its usage is the whole budget (``max_tokens``, else the model's maximum).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from emulator.answers import answer_request
from emulator.faults import BROKEN_ANSWERS, break_answer
from emulator.hashing import short_hex
from emulator.packed import break_records
from emulator.wire import DEFAULT_MODEL, MAX_TOKENS_LIMIT, completion_body, text_message, tool_message
from pipeline.tokens import count_completion_tokens


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    cached_tokens: int


def build_completion(body: Mapping[str, Any], fault: str | None, key: str, attempt: int, request_id: str,
                     usage: Usage, record_fault: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The chat-completion body for ``body`` (``fault``: a broken-answer fault or None;
    ``record_fault``: the fault of each record of a packed answer, by the record's id)."""
    answer = answer_request(body)
    text, finish, as_tool, content_filter = answer.text, "stop", True, False
    if fault is None and record_fault is not None and answer.packed:
        text = orjson.dumps(break_records(answer.instance, answer.plan, record_fault)).decode()
    if fault in BROKEN_ANSWERS:
        broken = break_answer(str(fault), answer.text, answer.instance, answer.plan)
        text, finish, as_tool, content_filter = (
            broken.text, broken.finish_reason, broken.as_tool_call, broken.content_filter
        )  # fmt: skip
    budget = _max_tokens(body)
    completion = budget if fault == "truncated" else count_completion_tokens(text)
    if completion > budget:
        text, finish, completion = fit_tokens(text, budget), "length", budget
    if answer.tool_name is not None and as_tool:
        message = tool_message("call_" + short_hex(key, attempt, "call", length=20), answer.tool_name, text)
        finish = "tool_calls" if finish == "stop" else finish
    else:
        message = text_message(text)
    return completion_body(
        task_id=short_hex(key, attempt, "task", length=24),
        request_id=request_id,
        created=int(time.time()),
        model=str(body.get("model") or DEFAULT_MODEL),
        message=message,
        finish_reason=finish,
        usage=(usage.prompt_tokens, completion),
        cached_tokens=usage.cached_tokens,
        content_filter=content_filter,
    )


def _max_tokens(body: Mapping[str, Any]) -> int:
    value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else MAX_TOKENS_LIMIT


def fit_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` that counts at most ``budget`` completion tokens."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_completion_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]
