"""Parse, repair and validate a model answer; build the re-ask (all pure).

A model answer ends in one :class:`Verdict`:

- ``Valid``: JSON that the schema accepts;
- ``Reask``: something a second try can fix (no JSON, broken JSON, schema errors, truncated at the
  token limit, empty content); carries the validator's errors for the re-ask message;
- ``Filtered``: the platform's content review cut the answer (``finish_reason=sensitive``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

MAX_LISTED_ERRORS = 8
MAX_ERROR_CHARS = 240
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Valid:
    data: dict[str, Any]


@dataclass(frozen=True)
class Reask:
    code: str  # parse_error | schema_invalid | truncated | empty_answer
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Filtered:
    code: str
    message: str


Verdict = Valid | Reask | Filtered


def compile_validator(schema: Mapping[str, Any]) -> jsonschema_rs.Validator:
    """A compiled 2020-12 validator (jsonschema-rs, compiled once per run: far faster than jsonschema)."""
    return jsonschema_rs.validator_for(dict(schema))


def judge(content: str | None, finish_reason: str | None, validator: jsonschema_rs.Validator) -> Verdict:
    """Decide what an answer is worth. ``content`` is the text (or tool arguments) returned."""
    if finish_reason == "sensitive":
        return Filtered("sensitive", "the platform's content review stopped the answer")
    if finish_reason == "length":
        return Reask("truncated", ("the answer was cut off at the token limit; answer shorter",))
    if content is None or not content.strip():
        return Reask("empty_answer", ("the answer was empty",))
    data = parse_json_object(content)
    if data is None:
        return Reask("parse_error", ("the answer is not one parseable JSON object",))
    errors = schema_errors(data, validator)
    if errors:
        return Reask("schema_invalid", errors)
    return Valid(data)


def parse_json_object(content: str) -> dict[str, Any] | None:
    """The JSON object in ``content``: plain, fenced, or followed/preceded by prose."""
    text = content.strip()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = _repair(text)
    return value if isinstance(value, dict) else None


def _repair(text: str) -> Any:
    fenced = _FENCE.search(text)
    if fenced:
        try:
            return orjson.loads(fenced.group(1).strip())
        except orjson.JSONDecodeError:
            text = fenced.group(1)
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return value


def duplicated_keys(content: str) -> frozenset[str]:
    """Keys the answer's outermost JSON object names more than once (found where
    :func:`parse_json_object` finds the object). JSON parsers keep the last value of a repeated key,
    silently; in a packed answer that value may be another item's record."""
    outermost: list[list[str]] = [[]]

    def keep_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        outermost[0] = [key for key, _ in pairs]  # objects close inside out: the last call is the outermost
        return dict(pairs)

    decoder = json.JSONDecoder(object_pairs_hook=keep_keys)
    text = content.strip()
    fenced = _FENCE.search(text)
    inner = fenced.group(1).strip() if fenced else text
    for candidate in dict.fromkeys((text, inner)):
        try:
            decoder.decode(candidate)
        except json.JSONDecodeError:
            continue
        return _repeated(outermost[0])
    start = inner.find("{")
    try:
        decoder.raw_decode(inner, max(start, 0))
    except json.JSONDecodeError:
        return frozenset()
    return _repeated(outermost[0])


def _repeated(keys: list[str]) -> frozenset[str]:
    return frozenset(key for key, times in Counter(keys).items() if times > 1)


def schema_errors(data: Any, validator: jsonschema_rs.Validator) -> tuple[str, ...]:
    """The validator's errors as short ``/path: message`` lines (empty when valid)."""
    if validator.is_valid(data):
        return ()
    lines = []
    for error in validator.iter_errors(data):
        path = "/" + "/".join(str(p) for p in error.instance_path)
        lines.append(f"{path}: {error.message}"[:MAX_ERROR_CHARS])
        if len(lines) >= MAX_LISTED_ERRORS:
            break
    return tuple(lines)


def owed_verdict(answer: str | None, finish_reason: str | None, validator: jsonschema_rs.Validator) -> Reask:
    """What is wrong with a stored answer owed its re-ask (judged again; one that now passes is still
    re-asked, with a generic error: the row was left owed that re-ask)."""
    verdict = judge(answer, finish_reason, validator)
    return verdict if isinstance(verdict, Reask) else Reask("schema_invalid", ("the answer did not match the schema",))


def build_reask(body: Mapping[str, Any], bad_answer: str | None, verdict: Reask) -> dict[str, Any]:
    """A copy of ``body`` with the bad answer and the validator's errors appended."""
    problems = "\n".join(f"- {line}" for line in verdict.errors)
    follow_up = (
        "Your previous answer was not accepted. Problems found by the JSON Schema validator:\n"
        f"{problems}\n"
        "Answer again with one corrected JSON object that validates against the schema. JSON only."
    )
    messages = [*body["messages"], {"role": "assistant", "content": (bad_answer or "")[:20_000]}]
    messages.append({"role": "user", "content": follow_up})
    return {**body, "messages": messages}
