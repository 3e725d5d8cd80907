"""From a request body to the answer the emulator would give when nothing goes wrong.

The schema comes from the system message (between the lines ``<json_schema>`` and
``</json_schema>``) or, in tools mode, from ``tools[0].function.parameters``; the document from the
first user message (between ``<document>`` and ``</document>``). A re-ask appends messages after
these, so it is answered from the same schema and document. Without a schema the answer is ``{}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from emulator.builder import Builder
from emulator.docfacts import DocFacts
from emulator.hashing import canonical_json, short_hex
from emulator.schema_plan import Node, plan_for_text

SCHEMA_OPEN, SCHEMA_CLOSE = "<json_schema>", "</json_schema>"
DOC_OPEN, DOC_CLOSE = "<document>", "</document>"
DEFAULT_TOOL_NAME = "record_extraction"


@dataclass(frozen=True, slots=True)
class Answer:
    """A well-formed answer: the instance, its JSON text and where it goes (content or a tool call)."""

    instance: Any
    text: str
    plan: Node | None
    tool_name: str | None  # None: json/text mode, the text goes into ``content``


def answer_request(body: Mapping[str, Any]) -> Answer:
    """The schema-valid answer for a request body (pure, deterministic)."""
    messages = body.get("messages") or []
    tool_name, schema_text = _schema_source(body, messages)
    plan = plan_for_text(schema_text) if schema_text else None
    if plan is None:
        return Answer(instance={}, text="{}", plan=None, tool_name=tool_name)
    document = extract_document(messages)
    builder = Builder(DocFacts(document), short_hex(schema_text or "", document))
    instance = builder.build(plan)
    return Answer(instance=instance, text=orjson.dumps(instance).decode(), plan=plan, tool_name=tool_name)


def _schema_source(body: Mapping[str, Any], messages: Sequence[Any]) -> tuple[str | None, str | None]:
    """(tool name or None, schema text or None)."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        function = tools[0].get("function") if isinstance(tools[0], Mapping) else None
        if isinstance(function, Mapping):
            name = str(function.get("name") or DEFAULT_TOOL_NAME)
            params = function.get("parameters")
            return name, canonical_json(params).decode() if isinstance(params, Mapping) else None
    return None, extract_schema_text(messages)


def extract_schema_text(messages: Sequence[Any]) -> str | None:
    """The text between the ``<json_schema>`` and ``</json_schema>`` lines of the system message."""
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") == "system":
            content = message.get("content")
            if isinstance(content, str):
                return _between(content, SCHEMA_OPEN, SCHEMA_CLOSE)
    return None


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


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return text[start : end if end >= 0 else len(text)].strip()
