"""Walk a compiled schema plan and produce a schema-valid instance, filled from the document.

Each leaf is filled by its role (see ``roles.py``) from ``DocFacts``; what no rule can fill gets a
typed placeholder (``"emulated <field>"``, a number inside the bounds, a date). Choices that need
randomness (enum without an obvious keyword, booleans, array lengths) hash the request's material
and the field's path, so they are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from emulator.docfacts import DocFacts
from emulator.hashing import canonical_json, pick_index, short_hex, unit_float
from emulator.lexicon import lexicon_key
from emulator.roles import name_tokens, role_for
from emulator.schema_plan import STOP, Node

_LANGUAGE_VALUES = {"zh": ("zh", "zh-cn", "chinese", "中文", "cn"), "en": ("en", "en-us", "english", "英文")}


class Builder:
    """Builds instances for one request: the document's facts and a hash material."""

    def __init__(self, facts: DocFacts, material: str) -> None:
        self.facts = facts
        self.material = material

    def build(self, node: Node, path: str = "", index: int = 0) -> Any:
        """The instance for ``node`` at ``path`` (``index``: position in the nearest array)."""
        if node.has_const:
            return node.const
        if node.kind in ("enum", "object", "array", "null"):
            return self._build_structure(node, path, index)
        value = self._fill(node, index)
        if value is None:  # a rule that finds nothing answers null where null is allowed
            return None if node.nullable and node.role else self._placeholder(node, path, index)
        return value

    def _build_structure(self, node: Node, path: str, index: int) -> Any:
        if node.kind == "enum":
            return self._enum(node, path)
        if node.kind == "object":
            built = {key: self.build(child, f"{path}/{key}", index) for key, child in node.props}
            return self._fill_typed_value(node, built, index)
        if node.kind == "array":
            return self._array(node, path)
        return None

    def _fill_typed_value(self, node: Node, built: dict[str, Any], index: int) -> dict[str, Any]:
        """``{"type": "order_id", "value": …}``: fill the value by the role its chosen type names."""
        kind = built.get("type", built.get("kind"))
        value_node = next((child for key, child in node.props if key == "value"), None)
        if not isinstance(kind, str) or value_node is None or value_node.kind != "string":
            return built
        typed = replace(value_node, name=kind, role=role_for(kind, "string", ""))
        found = self._fill(typed, index) if typed.role else None
        return {**built, "value": found} if found is not None else built

    def _array(self, node: Node, path: str) -> list[Any]:
        items = node.items or STOP
        upper = node.max_items if node.max_items is not None else max(node.min_items, 3)
        if items is STOP:
            return [None] * node.min_items
        count = min(upper, max(node.min_items, 1 + pick_index(3, self.material, path, "n")))
        values = [self.build(items, f"{path}/{i}", i) for i in range(count)]
        if node.unique:
            values = _dedupe(values)
            extra = count
            while len(values) < node.min_items and extra < count + 50:
                values = _dedupe([*values, self.build(items, f"{path}/{extra}", extra)])
                extra += 1
        return values

    def _enum(self, node: Node, path: str) -> Any:
        values = node.enum or (None,)
        chosen = _enum_by_role(node, values, self.facts) or _enum_by_keywords(values, self.facts)
        if chosen is not None:
            return chosen
        concrete = [v for v in values if v is not None] or list(values)
        return concrete[pick_index(len(concrete), self.material, path, "enum")]

    def _fill(self, node: Node, index: int) -> Any:
        role, facts = node.role, self.facts
        if node.kind == "boolean":
            return facts.keyword_hits(lexicon_key(role[5:]) or "") > 0 if role.startswith("flag:") else None
        if node.kind in ("integer", "number"):
            return _fit_number(node, _numeric_fact(role, facts, node))
        text = _string_fact(role, node, facts, index)
        return _fit_string(node, text) if text is not None else None

    def _placeholder(self, node: Node, path: str, index: int) -> Any:
        if node.kind == "boolean":
            return pick_index(2, self.material, path) == 1
        if node.kind in ("integer", "number"):
            return _placeholder_number(node, unit_float(self.material, path))
        return _fit_string(node, self._placeholder_text(node, path, index))

    def _placeholder_text(self, node: Node, path: str, index: int) -> str:
        day = 1 + pick_index(28, self.material, path)
        by_format = {
            "date": f"2024-01-{day:02d}",
            "datetime": f"2024-01-{day:02d}T00:00:00Z",
            "time": "12:00:00",
            "email": "user@example.com",
            "uri": "https://example.com/emulated",
            "uuid": _uuid_from(short_hex(self.material, path, length=32)),
        }
        if node.role in by_format:
            return by_format[node.role]
        suffix = f" {index + 1}" if path.rstrip("/").split("/")[-1].isdigit() else ""
        return f"emulated {node.name or 'value'}{suffix}"


def _numeric_fact(role: str, facts: DocFacts, node: Node) -> float | None:
    if role.startswith("amount"):
        amount = facts.find_amount(role.partition(":")[2])
        return amount[0] if amount else None
    if role.startswith("percent"):
        kind = role.partition(":")[2]
        growth = kind != "" or "growth" in node.name or "yoy" in node.name
        value = facts.find_percent_after(kind) if kind else facts.find_percent(growth=growth)
        if value is not None and node.maximum is not None and node.maximum <= 1 < abs(value):
            return value / 100
        return value
    if role == "year":
        year = facts.find_year()
        return float(year) if year is not None else None
    return None


def _string_fact(role: str, node: Node, facts: DocFacts, index: int) -> str | None:
    if role.startswith("amount"):
        amount = facts.find_amount(role.partition(":")[2])
        return amount[1] if amount else None
    if role in ("summary", "excerpt"):
        sentences = facts.sentences
        position = index if role == "summary" else index + 1
        return sentences[position % len(sentences)] if sentences else None
    finder = _STRING_FINDERS.get(role)
    return finder(facts, node) if finder else None


_STRING_FINDERS: dict[str, Callable[[DocFacts, Node], str | None]] = {
    "id": lambda facts, node: facts.find_id(name_tokens(node.name)),
    "percent": lambda facts, _: _percent_text(facts.find_percent(growth=True)),
    "percent:revenue": lambda facts, _: _percent_text(facts.find_percent_after("revenue")),
    "percent:profit": lambda facts, _: _percent_text(facts.find_percent_after("profit")),
    "datetime": lambda facts, _: _datetime_text(facts.find_date()),
    "language": lambda facts, _: facts.language,
    "card": lambda facts, _: facts.find_card(),
    "email": lambda facts, _: facts.find_email(),
    "phone": lambda facts, _: facts.find_phone(),
    "currency": lambda facts, _: facts.find_currency(),
    "date": lambda facts, _: facts.find_date(),
    "period": lambda facts, _: facts.find_period(),
    "company": lambda facts, _: facts.find_company(),
    "person": lambda facts, _: facts.find_person(),
    "unit": lambda facts, _: facts.find_unit(),
}


def _percent_text(value: float | None) -> str | None:
    return f"{value:g}%" if value is not None else None


def _datetime_text(date: str | None) -> str | None:
    return f"{date}T00:00:00Z" if date else None


def _enum_by_role(node: Node, values: tuple[Any, ...], facts: DocFacts) -> Any:
    wanted: tuple[str, ...] = ()
    if node.role == "currency":
        wanted = {"CNY": ("cny", "rmb", "人民币", "元"), "USD": ("usd", "$", "美元")}.get(
            facts.find_currency(), (facts.find_currency().lower(),)
        )
    elif node.role == "language":
        wanted = _LANGUAGE_VALUES.get(facts.language, ())
    for value in values:
        if isinstance(value, str) and value.lower() in wanted:
            return value
    return None


def _enum_by_keywords(values: tuple[Any, ...], facts: DocFacts) -> Any:
    best, best_score = None, 0
    for value in values:
        if not isinstance(value, str):
            continue
        score = facts.value_score(value)
        if score > best_score:
            best, best_score = value, score
    return best


def _fit_number(node: Node, value: float | None) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if node.minimum is not None:
        value = max(value, node.minimum)
    if node.maximum is not None:
        value = min(value, node.maximum)
    if node.kind == "integer":
        rounded = round(value)
        if node.maximum is not None and rounded > node.maximum:
            rounded = math.floor(node.maximum)
        if node.minimum is not None and rounded < node.minimum:
            rounded = math.ceil(node.minimum)
        return int(rounded)
    return value


def _placeholder_number(node: Node, draw: float) -> float | int:
    lo = node.minimum if node.minimum is not None else 0.0
    hi = node.maximum if node.maximum is not None else lo + 100.0
    value = _fit_number(node, round(lo + draw * max(hi - lo, 0.0), 2))
    return value if value is not None else 0


def _fit_string(node: Node, text: str) -> str:
    if node.max_length is not None and len(text) > node.max_length:
        text = text[: node.max_length].rstrip() if node.max_length > 0 else ""
        text = text if len(text) >= node.min_length else text.ljust(node.min_length, ".")
    if len(text) < node.min_length:
        text = text.ljust(node.min_length, ".")
    return text


def _uuid_from(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-4{hex32[13:16]}-a{hex32[17:20]}-{hex32[20:32]}"


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[bytes] = set()
    out = []
    for value in values:
        key = canonical_json(value)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out
