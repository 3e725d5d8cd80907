"""Fault and latency decisions, and the broken answers a fault produces (all pure).

A fault is drawn from ``sha256(seed, content key, attempt)``: deterministic for a seed, yet a retry
of the same content (a higher attempt number) is drawn afresh and can succeed. ``sensitive_input``
(1301) is drawn from ``(seed, content key)`` only, so a filtered content is always filtered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import orjson

from emulator.config import FAULT_NAMES, STICKY_FAULT, LatencySpec
from emulator.hashing import unit_float
from emulator.schema_plan import Node

RATE_LIMIT_FAULTS = frozenset({"1302", "1303", "1305", "1312"})
SERVER_FAULTS = frozenset({"500", "503"})
#: Faults that answer 200 with a broken body.
BROKEN_ANSWERS = frozenset(
    {"fence", "prose", "malformed", "schema_violation", "truncated", "empty", "sensitive_output", "wrong_enum",
     "missing_required", "string_for_number", "duplicate_key"}
)
#: Valid JSON that fails the schema, each its own way (then ``violate_schema``'s way if impossible).
SCHEMA_VIOLATIONS = frozenset({"schema_violation", "wrong_enum", "missing_required", "string_for_number"})
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class FaultTable:
    """Cumulative thresholds of the drawn faults, plus the sticky 1301 rate."""

    thresholds: tuple[tuple[float, str], ...]
    sticky_rate: float

    @classmethod
    def from_rates(cls, rates: Mapping[str, float]) -> FaultTable:
        total, thresholds = 0.0, []
        for name in FAULT_NAMES:
            rate = rates.get(name, 0.0)
            if name != STICKY_FAULT and rate > 0:
                total += rate
                thresholds.append((total, name))
        return cls(tuple(thresholds), rates.get(STICKY_FAULT, 0.0))


def decide_fault(table: FaultTable, seed: int, key: str, attempt: int) -> str | None:
    """The fault for the ``attempt``-th sighting (from 0) of a content, or None for a good answer."""
    if table.sticky_rate > 0 and unit_float(seed, "sticky", key) < table.sticky_rate:
        return STICKY_FAULT
    if not table.thresholds:
        return None
    draw = unit_float(seed, "fault", key, attempt)
    for upper, name in table.thresholds:
        if draw < upper:
            return name
    return None


def draw_latency(spec: LatencySpec, scale: float, seed: int, key: str, attempt: int, *, prompt_tokens: int = 0,
                 completion_tokens: int = 0, load: float = 0.0, slowdown: float = 0.0) -> float:
    """Seconds from a request's arrival to its (last) byte, deterministic per (seed, key, attempt).

    ``load`` is the share of the cap in flight (0..1); with ``slowdown`` F the answer takes
    ``1 + F * load`` times longer (a server near its cap decodes slower).
    """
    u = unit_float(seed, "latency", key, attempt)
    if spec.kind == "fixed":
        base = spec.a
    elif spec.kind == "uniform":
        base = spec.a + u * (spec.b - spec.a)
    elif spec.kind == "lognormal":
        base = spec.a * math.exp(spec.b * _normal(u))
    else:
        nominal = spec.a + prompt_tokens / spec.b + completion_tokens / spec.c
        base = nominal * math.exp(spec.d * _normal(u)) if spec.d > 0 else nominal
    return max(0.0, base * scale * (1.0 + slowdown * min(max(load, 0.0), 1.0)))


def first_token_share(spec: LatencySpec, prompt_tokens: int, completion_tokens: int) -> float:
    """Which share of the delay comes before the first token (a stream's first chunk); 1 for the
    models that do not know about tokens (everything arrives at once)."""
    if spec.kind != "tokens":
        return 1.0
    first = spec.a + prompt_tokens / spec.b
    total = first + completion_tokens / spec.c
    return first / total if total > 0 else 1.0


def _normal(u: float) -> float:
    return _NORMAL.inv_cdf(min(max(u, 1e-9), 1 - 1e-9))


@dataclass(frozen=True, slots=True)
class BrokenAnswer:
    """What a broken-answer fault puts on the wire."""

    text: str
    finish_reason: str
    as_tool_call: bool  # in tools mode: keep the tool call (with broken arguments) or answer as text
    content_filter: bool = False


def break_answer(fault: str, text: str, instance: Any, plan: Node | None) -> BrokenAnswer:
    """Turn a good answer text into what the ``fault`` makes of it."""
    if fault in SCHEMA_VIOLATIONS:
        return BrokenAnswer(orjson.dumps(_violation(fault, instance, plan)).decode(), "stop", as_tool_call=True)
    if fault == "sensitive_output":
        return BrokenAnswer(text[: len(text) // 3], "sensitive", as_tool_call=False, content_filter=True)
    simple = {
        "fence": (f"```json\n{text}\n```", "stop", False),
        "prose": (f"{text}\nI hope this extraction helps.", "stop", False),
        "malformed": (_malform(text), "stop", True),
        "truncated": (text[: max(1, len(text) // 2)], "length", True),
        "empty": ("", "stop", False),
        "duplicate_key": (_duplicate_key(text), "stop", True),
    }
    if fault not in simple:
        raise ValueError(f"{fault!r} is not a broken-answer fault")
    broken, finish, as_tool_call = simple[fault]
    return BrokenAnswer(broken, finish, as_tool_call)


def _violation(fault: str, instance: Any, plan: Node | None) -> Any:
    changed: Any = None
    if fault == "wrong_enum":
        changed = _replace_first(instance, plan, lambda n, v: n.kind == "enum" and v is not None,
                                 lambda n, v: _not_in(n.enum or ()))
    elif fault == "string_for_number":
        changed = _replace_first(instance, plan,
                                 lambda n, v: n.kind in ("integer", "number") and isinstance(v, int | float),
                                 lambda n, v: f"{v} (approx.)")
    elif fault == "missing_required" and isinstance(instance, dict) and plan is not None:
        present = [k for k in plan.required if k in instance]
        changed = {k: v for k, v in instance.items() if k != present[0]} if present else None
    return changed if changed is not None else violate_schema(instance, plan)


def _replace_first(instance: Any, plan: Node | None, wanted: Callable[[Node, Any], bool],
                   make: Callable[[Node, Any], Any]) -> Any:
    """A copy of ``instance`` with the first value (depth first) whose node is ``wanted`` replaced."""
    if plan is None or not isinstance(instance, dict):
        return None
    for key, child in plan.props:
        if key not in instance:
            continue
        value = instance[key]
        if wanted(child, value):
            return {**instance, key: make(child, value)}
        inner = _replace_first(value, child, wanted, make)
        if inner is not None:
            return {**instance, key: inner}
    return None


def _not_in(values: tuple[Any, ...]) -> str:
    candidate = "other"
    while candidate in values:
        candidate += "_value"
    return candidate


def _duplicate_key(text: str) -> str:
    """The answer object with its first key named once more at the end, holding the last key's value
    (a packed answer then names ``d1`` twice, the second time with another item's record)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if not isinstance(value, dict) or not value:
        return text
    first, last = next(iter(value)), list(value.values())[-1]
    return text.rstrip()[:-1] + "," + orjson.dumps(first).decode() + ":" + orjson.dumps(last).decode() + "}"


def _malform(text: str) -> str:
    """Invalid JSON that still looks like an answer: drop the closing brace, add a stray comma."""
    body = text.rstrip()
    if body.endswith(("}", "]")):
        return body[:-1] + ",}" if len(body) > 2 else body[:-1] + '"'
    return body + '{"'


def violate_schema(instance: Any, plan: Node | None) -> Any:
    """Valid JSON that the schema rejects: a required field removed, else a wrong type."""
    if not isinstance(instance, dict):
        return {"unexpected": instance}
    required = [k for k in (plan.required if plan else ()) if k in instance]
    if required:
        return {k: v for k, v in instance.items() if k != required[0]}
    if instance:
        first = next(iter(instance))
        wrong: Any = 12345 if isinstance(instance[first], str) else "not the expected type"
        return {**instance, first: wrong}
    if plan is not None and plan.kind == "object":
        return []
    return {"unexpected": True}
