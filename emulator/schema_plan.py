"""Compile a JSON Schema once into a plan of ``Node``s the answer builder walks.

Resolves local ``$ref`` (``#``, ``#/$defs/…``, ``#/definitions/…``), merges ``allOf``, takes the
first (non-null) branch of ``anyOf``/``oneOf``, reads type lists (``["string", "null"]``), enums,
const, bounds, lengths, formats and item counts, and assigns each leaf a *role* from its name
(``revenue`` → amount, ``booking_id`` → id, …) that says how to fill it from the document.
Plans are cached by the sha256 of the schema text, so each request costs a dict lookup.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from emulator.roles import role_for

MAX_REF_DEPTH = 12
_CACHE_SIZE = 256
_NO_CONST: Any = object()
_KINDS = ("object", "array", "string", "integer", "number", "boolean", "null")


@dataclass(frozen=True, slots=True)
class Node:
    """One schema position: what to produce there and how to fill it."""

    kind: str
    name: str = ""
    role: str = ""
    nullable: bool = False
    enum: tuple[Any, ...] | None = None
    const: Any = _NO_CONST
    minimum: float | None = None
    maximum: float | None = None
    min_length: int = 0
    max_length: int | None = None
    fmt: str = ""
    props: tuple[tuple[str, Node], ...] = ()
    required: tuple[str, ...] = ()
    items: Node | None = None
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False

    @property
    def has_const(self) -> bool:
        return self.const is not _NO_CONST


STOP = Node(kind="null", nullable=True)

_plan_cache: OrderedDict[str, Node | None] = OrderedDict()


def plan_for_text(schema_text: str) -> Node | None:
    """The plan of a schema given as JSON text (None if it is not a JSON object); cached."""
    key = hashlib.sha256(schema_text.encode()).hexdigest()
    if key in _plan_cache:
        _plan_cache.move_to_end(key)
        return _plan_cache[key]
    try:
        schema = orjson.loads(schema_text)
    except orjson.JSONDecodeError:
        schema = None
    plan = compile_schema(schema) if isinstance(schema, dict) else None
    _plan_cache[key] = plan
    if len(_plan_cache) > _CACHE_SIZE:
        _plan_cache.popitem(last=False)
    return plan


def compile_schema(schema: Mapping[str, Any]) -> Node:
    """Compile a whole schema (its root is the target of ``#`` refs)."""
    return _compile(schema, schema, "", 0)


def _compile(schema: Any, root: Mapping[str, Any], name: str, depth: int) -> Node:
    if depth > MAX_REF_DEPTH or not isinstance(schema, Mapping):
        return STOP if schema is not True else Node(kind="string", name=name)
    schema, nullable = _flatten(schema, root, depth)
    kind, type_nullable = _pick_kind(schema)
    nullable = nullable or type_nullable
    common: dict[str, Any] = {"name": name, "nullable": nullable}
    if "const" in schema:
        return Node(kind="const", const=schema["const"], **common)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return Node(kind="enum", enum=tuple(schema["enum"]), role=role_for(name, "enum", ""), **common)
    if kind == "object":
        return _compile_object(schema, root, depth, common)
    if kind == "array":
        return _compile_array(schema, root, depth, common)
    return _compile_scalar(schema, kind, common)


def _flatten(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> tuple[dict[str, Any], bool]:
    """Inline $ref, allOf and the first anyOf/oneOf branch; report whether null was an option."""
    out = dict(schema)
    nullable = False
    for _ in range(MAX_REF_DEPTH):
        if "$ref" in out:
            target = resolve_ref(root, str(out.pop("$ref")))
            out = {**target, **out}
            continue
        if isinstance(out.get("allOf"), list):
            for part in out.pop("allOf"):
                part_flat, _ = _flatten(part, root, depth + 1) if isinstance(part, Mapping) else ({}, False)
                out = _merge(out, part_flat)
            continue
        branch_key = "anyOf" if isinstance(out.get("anyOf"), list) else "oneOf"
        if isinstance(out.get(branch_key), list) and out[branch_key]:
            branches = [b for b in out.pop(branch_key) if isinstance(b, Mapping)]
            non_null = [b for b in branches if b.get("type") != "null"]
            nullable = nullable or len(non_null) < len(branches)
            out = {**(non_null or branches or [{}])[0], **out}
            continue
        break
    return out, nullable


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**extra, **base}
    if "properties" in base or "properties" in extra:
        merged["properties"] = {**extra.get("properties", {}), **base.get("properties", {})}
    if "required" in base or "required" in extra:
        merged["required"] = list(dict.fromkeys([*base.get("required", []), *extra.get("required", [])]))
    return merged


def resolve_ref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """Resolve a local JSON-pointer ref; an unresolvable ref yields ``{}`` (anything)."""
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node if isinstance(node, Mapping) else {}


def _pick_kind(schema: Mapping[str, Any]) -> tuple[str, bool]:
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    types = [t for t in types if t in _KINDS]
    nullable = "null" in types
    concrete = [t for t in types if t != "null"]
    if concrete:
        return concrete[0], nullable
    if types:
        return "null", True
    if "properties" in schema or "required" in schema:
        return "object", nullable
    if "items" in schema or "prefixItems" in schema:
        return "array", nullable
    return "string", nullable


def _compile_object(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int, common: dict[str, Any]) -> Node:
    props_schema = schema.get("properties") or {}
    props = [(key, _compile(sub, root, key, depth + 1)) for key, sub in props_schema.items()]
    required = tuple(str(r) for r in schema.get("required") or [])
    known = {key for key, _ in props}
    props += [(key, Node(kind="string", name=key)) for key in required if key not in known]
    return Node(kind="object", props=tuple(props), required=required, **common)


def _compile_array(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int, common: dict[str, Any]) -> Node:
    items_schema = schema.get("items")
    if not isinstance(items_schema, Mapping):
        prefix = schema.get("prefixItems")
        items_schema = prefix[0] if isinstance(prefix, list) and prefix else {}
    singular = _singular(common["name"])
    items = _compile(items_schema, root, singular, depth + 1)
    max_items = schema.get("maxItems")
    return Node(
        kind="array",
        items=items,
        min_items=int(schema.get("minItems", 0)),
        max_items=int(max_items) if max_items is not None else None,
        unique=bool(schema.get("uniqueItems", False)),
        role=role_for(common["name"], "array", ""),
        **common,
    )


def _compile_scalar(schema: Mapping[str, Any], kind: str, common: dict[str, Any]) -> Node:
    minimum, maximum = _bounds(schema, kind)
    max_length = schema.get("maxLength")
    fmt = str(schema.get("format", ""))
    return Node(
        kind=kind,
        role=role_for(common["name"], kind, fmt),
        minimum=minimum,
        maximum=maximum,
        min_length=int(schema.get("minLength", 0)),
        max_length=int(max_length) if max_length is not None else None,
        fmt=fmt,
        **common,
    )


def _bounds(schema: Mapping[str, Any], kind: str) -> tuple[float | None, float | None]:
    step = 1.0 if kind == "integer" else 0.01
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        lo = float(schema["exclusiveMinimum"]) + step
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        hi = float(schema["exclusiveMaximum"]) - step
    return (float(lo) if lo is not None else None, float(hi) if hi is not None else None)


def _singular(name: str) -> str:
    """``risk_factors`` → ``risk_factor``: items are named like one element of their array."""
    return re.sub(r"(?<=[a-z])s$", "", name) if not name.endswith("ss") else name
