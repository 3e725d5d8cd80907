"""From a request body to the answer the emulator would give when nothing goes wrong.

The schema comes, first found wins, from: the first tool whose ``function.parameters`` is an
object; a system message's text between ``<json_schema>`` and ``</json_schema>``; a system message
that is a bare JSON Schema or holds one inside its text (the first embedded JSON object with
``properties``, ``type`` or ``$schema``; an example answer before it is skipped). The document is
the first user message (between ``<document>`` and ``</document>`` when marked). A re-ask appends
messages after these, so it is answered from the same schema and document. Without any schema the
answer is a plausible object built from the prompt (``FALLBACK_SCHEMA``: summary, language,
sentiment, highlights), so an outside client with its own prompt still gets something to judge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from emulator.builder import Builder
from emulator.docfacts import DocFacts
from emulator.hashing import canonical_json, short_hex
from emulator.packed import DOC_CLOSE, DOC_OPEN, _between, build_packed, packed_items
from emulator.schema_plan import Node, plan_for_text

SCHEMA_OPEN, SCHEMA_CLOSE = "<json_schema>", "</json_schema>"
_SCHEMA_MARKERS = ("properties", "type", "$schema", "$defs", "anyOf", "oneOf", "allOf")
_MAX_OBJECT_STARTS = 64  # embedded-object scan: enough for any prompt, bounded for hostile ones
_DECODER = json.JSONDecoder()
FALLBACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["summary", "language", "sentiment", "highlights"],
    "properties": {
        "summary": {"type": "string", "maxLength": 300},
        "language": {"type": "string"},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "highlights": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 3},
    },
}
_FALLBACK_TEXT = canonical_json(FALLBACK_SCHEMA).decode()
DEFAULT_TOOL_NAME = "record_extraction"


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed answer: the instance, its JSON text and where it goes (content or a tool call)."""

    instance: Any
    text: str
    plan: Node | None
    tool_name: str | None  # None: json/text mode, the text goes into ``content``
    packed: bool = False  # one record per item of a packed request (emulator/packed.py)


def answer_request(body: Mapping[str, Any]) -> Answer:
    """The schema-valid answer for a request body (pure, deterministic)."""
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        messages = []
    tool_name, schema_text = _schema_source(body, messages)
    plan = plan_for_text(schema_text) if schema_text else None
    if plan is None:
        schema_text, plan = _FALLBACK_TEXT, plan_for_text(_FALLBACK_TEXT)
    assert plan is not None and schema_text is not None  # the fallback schema always plans
    items = packed_items(messages) if tool_name is None else []
    if items:  # several documents in one request: one record each (emulator/packed.py)
        packed = build_packed(plan, schema_text, items)
        return Answer(instance=packed, text=orjson.dumps(packed).decode(), plan=plan, tool_name=None,
                      packed=True)
    document = extract_document(messages)
    builder = Builder(DocFacts(document), short_hex(schema_text, document))
    instance = builder.build(plan)
    return Answer(instance=instance, text=orjson.dumps(instance).decode(), plan=plan, tool_name=tool_name)


def _schema_source(body: Mapping[str, Any], messages: Sequence[Any]) -> tuple[str | None, str | None]:
    """(tool name or None, schema text or None)."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("parameters"), Mapping):
                name = str(function.get("name") or DEFAULT_TOOL_NAME)
                return name, canonical_json(function["parameters"]).decode()
    return None, extract_schema_text(messages)


def extract_schema_text(messages: Sequence[Any]) -> str | None:
    """The schema in the system messages: between the tags, else a bare or embedded JSON Schema."""
    systems = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "system"]
    texts = [c for c in systems if isinstance(c, str)]
    for content in texts:
        tagged = _between(content, SCHEMA_OPEN, SCHEMA_CLOSE)
        if tagged is not None:
            return tagged
    for content in texts:
        embedded = _embedded_schema(content)
        if embedded is not None:
            return canonical_json(embedded).decode()
    return None


def _embedded_schema(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` that looks like a schema (not like an example answer)."""
    start, tries = text.find("{"), 0
    while start >= 0 and tries < _MAX_OBJECT_STARTS:
        tries += 1
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and _looks_like_schema(value):
            return value
        start = text.find("{", start + 1)
    return None


def _looks_like_schema(value: dict[str, Any]) -> bool:
    if isinstance(value.get("properties"), dict) or "$schema" in value:
        return True
    return isinstance(value.get("type"), str | list) and any(k in value for k in _SCHEMA_MARKERS if k != "type")


def extract_document(messages: Sequence[Any]) -> str:
    """The document of the first user message (its whole content when there are no markers)."""
    first_user: str | None = None
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if not isinstance(content, str):
                continue
            inside = _between(content, DOC_OPEN, DOC_CLOSE)
            if inside is not None:
                return inside
            first_user = content if first_user is None else first_user
    return first_user or ""
