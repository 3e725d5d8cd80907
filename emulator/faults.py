"""Fault and latency decisions, and the broken answers a fault produces (all pure).

A fault is drawn from ``sha256(seed, content key, attempt)``: deterministic for a seed, yet a retry
of the same content (a higher attempt number) is drawn afresh and can succeed. ``sensitive_input``
(1301) is drawn from ``(seed, content key)`` only, so a filtered content is always filtered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    {"fence", "prose", "malformed", "schema_violation", "truncated", "empty", "sensitive_output"}
)
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


def draw_latency(spec: LatencySpec, scale: float, seed: int, key: str, attempt: int) -> float:
    """Seconds to wait before answering, from the distribution, deterministic per (seed, key, attempt)."""
    if spec.kind == "fixed":
        base = spec.a
    else:
        u = unit_float(seed, "latency", key, attempt)
        if spec.kind == "uniform":
            base = spec.a + u * (spec.b - spec.a)
        else:
            z = _NORMAL.inv_cdf(min(max(u, 1e-9), 1 - 1e-9))
            base = spec.a * math.exp(spec.b * z)
    return max(0.0, base * scale)


@dataclass(frozen=True, slots=True)
class BrokenAnswer:
    """What a broken-answer fault puts on the wire."""

    text: str
    finish_reason: str
    as_tool_call: bool  # in tools mode: keep the tool call (with broken arguments) or answer as text
    content_filter: bool = False


def break_answer(fault: str, text: str, instance: Any, plan: Node | None) -> BrokenAnswer:
    """Turn a good answer text into what the ``fault`` makes of it."""
    if fault == "schema_violation":
        return BrokenAnswer(orjson.dumps(violate_schema(instance, plan)).decode(), "stop", as_tool_call=True)
    if fault == "sensitive_output":
        return BrokenAnswer(text[: len(text) // 3], "sensitive", as_tool_call=False, content_filter=True)
    simple = {
        "fence": (f"```json\n{text}\n```", "stop", False),
        "prose": (f"{text}\nI hope this extraction helps.", "stop", False),
        "malformed": (_malform(text), "stop", True),
        "truncated": (text[: max(1, len(text) // 2)], "length", True),
        "empty": ("", "stop", False),
    }
    if fault not in simple:
        raise ValueError(f"{fault!r} is not a broken-answer fault")
    broken, finish, as_tool_call = simple[fault]
    return BrokenAnswer(broken, finish, as_tool_call)


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
