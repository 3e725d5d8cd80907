"""Parse, repair and validate a model answer; build the re-ask (all pure).

A model answer ends in one :class:`Verdict`:

- ``Valid``: JSON that the schema accepts;
- ``Reask``: something a second try can fix (no JSON, broken JSON, schema errors, truncated at the
  token limit, empty content); carries the validator's errors for the re-ask message;
- ``Filtered``: the platform's content review cut the answer (``finish_reason=sensitive``).

Only what the table can hold is valid: every ``integer`` node is judged with int64 bounds (its
column is ``Int64``; a bigger answer is re-asked, not a null on an ``ok`` row), and both JSON
parsers read numbers alike (a whole number beyond 64 bits is a float, ``NaN``/``Infinity`` are
not JSON).
"""

from __future__ import annotations

import json
import math
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
#: The range of an ``Int64`` column, which every ``integer`` answer becomes (pipeline.tables).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The whole numbers orjson reads as ``int`` (beyond them it reads a float).
_ORJSON_INTS = (INT64_MIN, 2**64 - 1)
#: Keywords whose value is one subschema (or, for ``items`` in old drafts, a list of them), a list of
#: subschemas, or a name → subschema map: where :func:`int64_bounded` looks for ``integer`` nodes.
_ONE = frozenset({"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                  "unevaluatedItems", "unevaluatedProperties", "additionalItems"})
_MANY = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


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
    """A compiled 2020-12 validator (jsonschema-rs, compiled once per run: far faster than jsonschema)
    of ``schema`` with :func:`int64_bounded` integers. Only the judging sees the bounds: the request
    carries the task's schema as written (so request keys do not change)."""
    return jsonschema_rs.validator_for(int64_bounded(schema))


def int64_bounded(schema: Any) -> Any:
    """A copy of ``schema`` whose ``integer`` nodes (``"type": "integer"`` or a type list with
    ``integer`` and without ``number``) also require ``INT64_MIN <= value <= INT64_MAX``: a schema's
    own tighter bound is kept (pure)."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ONE:
            out[key] = [int64_bounded(v) for v in value] if isinstance(value, list) else int64_bounded(value)
        elif key in _MANY and isinstance(value, list):
            out[key] = [int64_bounded(v) for v in value]
        elif key in _MAP and isinstance(value, Mapping):
            out[key] = {name: int64_bounded(sub) for name, sub in value.items()}
        else:
            out[key] = value
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    if "integer" in kinds and "number" not in kinds:
        out["minimum"] = _tighter(out.get("minimum"), INT64_MIN, max)
        out["maximum"] = _tighter(out.get("maximum"), INT64_MAX, min)
    return out


def _tighter(own: Any, bound: int, pick: Any) -> Any:
    is_number = isinstance(own, int | float) and not isinstance(own, bool)
    return pick(own, bound) if is_number else bound


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


def _int_as_orjson(text: str) -> int | float:
    """A whole number as orjson reads it: ``int`` within 64 bits, else ``float`` (so an answer
    reads the same fenced, bare or after prose, and every valid answer can be written as JSON)."""
    value = int(text)
    return value if _ORJSON_INTS[0] <= value <= _ORJSON_INTS[1] else float(value)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: orjson refuses it too
        raise ValueError(f"number {text} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_int=_int_as_orjson, parse_float=_finite_float, parse_constant=_not_json)


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
    except ValueError:  # json.JSONDecodeError, or a number or constant orjson would not read
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
