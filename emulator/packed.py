"""Packed requests: several documents in one user message, one answer record per document.

A request is packed when its first user message is ``<item id="…">`` … ``</item>`` frames and
nothing else (docs/schema_authoring.md, "Packing"). The answer is one JSON object keyed by the items' ids; each
record is built exactly as the answer to that item alone would be (same schema, the item's own
document, the same hash material), so a packed run and an unpacked run get the same records and
no item's text can reach another item's record.

Per-record faults: the realistic profile's rates are drawn once more for each record (from
``seed``, the request's content key, the attempt and the item's id): a schema-violation fault makes
that record invalid, a fault that would spoil a whole answer (fence, prose, truncated, malformed,
empty, a cut by content review) leaves that record out. Request-level faults apply as for any request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from emulator.builder import Builder
from emulator.docfacts import DocFacts
from emulator.faults import SCHEMA_VIOLATIONS, break_answer
from emulator.hashing import short_hex
from emulator.schema_plan import Node

_ITEM = re.compile(r'<item id="([^"<>]{1,64})">(.*?)</item>', re.DOTALL)
DOC_OPEN, DOC_CLOSE = "<document>", "</document>"
#: Whole-answer faults that, drawn for one record, leave that record out of the answer.
DROPPING_FAULTS = frozenset({"fence", "prose", "truncated", "malformed", "empty", "sensitive_output"})


def packed_items(messages: Sequence[Any]) -> list[tuple[str, str]]:
    """(id, document) of each item of the first user message, in order; empty when not packed.

    A message is packed only when its items are the whole of it (nothing but whitespace around and
    between them): a document that shows or forges an item frame inside other text is one document.
    The document is the text between the item's ``<document>`` tags (the whole item without them).
    An id seen twice keeps its first item."""
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return _whole_items(message["content"])
    return []


def _whole_items(content: str) -> list[tuple[str, str]]:
    if not content.lstrip().startswith("<item "):  # most requests: not a pack
        return []
    items: dict[str, str] = {}
    end = 0
    for match in _ITEM.finditer(content):
        if content[end : match.start()].strip():
            return []
        items.setdefault(match.group(1), _document_of(match.group(2)))
        end = match.end()
    return [] if content[end:].strip() else list(items.items())


def build_packed(plan: Node, schema_text: str, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The record of every item, keyed by its id (each one as its unpacked answer would be)."""
    return {ident: Builder(DocFacts(doc), short_hex(schema_text, doc)).build(plan) for ident, doc in items}


def break_records(instance: Mapping[str, Any], plan: Node | None,
                  record_fault: Callable[[str], str | None]) -> dict[str, Any]:
    """``instance`` with each record's drawn fault applied: invalid, left out, or as it was."""
    out: dict[str, Any] = {}
    for ident, record in instance.items():
        fault = record_fault(ident)
        if fault in DROPPING_FAULTS:
            continue
        if fault in SCHEMA_VIOLATIONS:
            broken = break_answer(str(fault), orjson.dumps(record).decode(), record, plan)
            out[ident] = orjson.loads(broken.text)
            continue
        out[ident] = record
    return out


def _document_of(item: str) -> str:
    inside = _between(item, DOC_OPEN, DOC_CLOSE)
    return inside if inside is not None else item.strip()


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """The stripped text after ``open_tag`` up to ``close_tag`` (or the end); None without ``open_tag``."""
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return text[start : end if end >= 0 else len(text)].strip()
