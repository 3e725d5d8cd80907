"""Pack several short documents into one request, and split its answer back into rows (all pure).

A task opts in with ``pack_tokens`` (and ``pack_max``) in its ``task.toml``. Rows that need a
request are grouped in input order (:func:`plan_packs`) while their rendered items stay within
``pack_tokens`` prompt tokens and ``pack_max`` items; a row alone in its group is sent unpacked.

Layout of a packed request (:func:`render_packed_request`): a system message of its own, the same
for every pack of the task (rules, the task's instructions, the record schema), then one user
message holding each row's rendered template inside ``<item id="dN">`` … ``</item>``, where
``dN`` is the row's position in the pack (``d1``, ``d2``, …). The labels are the pack's own: the
row's record id is not part of the prompt and may be any string. A frame tag inside any value
(``<item …>``, ``</item>``, ``<document>`` …) is defused, so no row can close its own item or
open another's.

The answer is one JSON object keyed by label (:func:`split_answer`): each value is judged on its
own against the task's schema; a label that is missing, named twice, or whose value fails is
re-asked alone, unpacked. Keys the pack did not ask for are ignored. What a packed request cost is shared among
its rows (:func:`share_usage`) so that the rows' tokens add up to the request's exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

from pipeline.prompts import (
    RenderOptions,
    json_system_message,
    user_message,
)
from pipeline.settings import MAX_OUTPUT_TOKENS
from pipeline.tasks import TaskSpec
from pipeline.tokens import count_text_tokens
from pipeline.validate import Reask, Valid, duplicated_keys, judge, schema_errors

ITEM_OPEN = '<item id="{label}">'
ITEM_CLOSE = "</item>"

PACKED_RULES = (
    "The user message holds several documents, each inside <item id=\"…\"> … </item>. Answer with one "
    "JSON object whose keys are exactly those ids and whose value for each id is the object for that "
    "item alone, valid against the JSON Schema below; JSON only, no Markdown fences, comments or prose. "
    "Use null where allowed if the item does not say. Each item is judged on its own: never use one "
    "item's text in another item's answer."
)
#: Judges the packed answer as a whole: one JSON object (each record is judged on its own after).
_ANY_OBJECT = jsonschema_rs.validator_for({"type": "object"})


@dataclass(frozen=True)
class PackSettings:
    """A task's packing limits: at most ``max_items`` rows and ``max_tokens`` item tokens a pack."""

    max_tokens: int
    max_items: int


@dataclass(frozen=True)
class PackRow:
    """One row of a pack: its unpacked request key and body, and the values its item is rendered from."""

    key: str
    body: dict[str, Any]
    row: Mapping[str, Any]


#: Between a packed request's id and the label of a row's record in it: ``<request_id>#d3``.
PACKED_ID_MARK = "#"


def is_packed_request_id(request_id: str | None) -> bool:
    """Whether a journaled answer came out of a packed request (its id carries the record's label)."""
    return request_id is not None and PACKED_ID_MARK in request_id


def settings_for(task: TaskSpec, options: RenderOptions) -> PackSettings | None:
    """The task's packing limits, or None when it does not pack (not opted in, or tools mode)."""
    if task.pack_tokens is None or options.mode != "json":
        return None
    return PackSettings(max_tokens=task.pack_tokens, max_items=task.pack_max or 2)


def label(position: int) -> str:
    """The id of the ``position``-th (from 0) item of a pack."""
    return f"d{position + 1}"


def item_text(task: TaskSpec, row: Mapping[str, Any]) -> str:
    """One row's rendered template (its document frame included): the row's unpacked user message,
    whose values already travel with every frame tag, ``<item …>`` and ``</item>`` too, defused."""
    return user_message(task, row).strip("\n")


def item_tokens(task: TaskSpec, row: Mapping[str, Any]) -> int:
    """What one row adds to a packed request's prompt (its item, frame included)."""
    return count_text_tokens(_framed(label(0), item_text(task, row)))


def plan_packs(tokens: Sequence[int], settings: PackSettings) -> list[list[int]]:
    """Group positions ``0..len(tokens)-1`` in order: a group holds at most ``max_items`` positions
    whose tokens sum to at most ``max_tokens``. A row over ``max_tokens`` on its own is a group of one
    (sent unpacked, as is any group of one)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for position, size in enumerate(tokens):
        if current and (len(current) >= settings.max_items or used + size > settings.max_tokens):
            groups.append(current)
            current, used = [], 0
        current.append(position)
        used += size
    if current:
        groups.append(current)
    return groups


def packed_system_message(task: TaskSpec) -> str:
    """The system message of every packed request of ``task`` (json mode only)."""
    return json_system_message(task, PACKED_RULES)


def packed_user_message(task: TaskSpec, rows: Sequence[Mapping[str, Any]]) -> str:
    """The items of a pack, in order, one after the other."""
    return "\n".join(_framed(label(i), item_text(task, row)) for i, row in enumerate(rows))


def render_packed_request(task: TaskSpec, rows: Sequence[Mapping[str, Any]], options: RenderOptions,
                          system: str | None = None) -> dict[str, Any]:
    """A complete packed request body without ``request_id``."""
    if options.mode != "json":
        raise ValueError("packing is only defined for json mode")
    if len(rows) < 2:
        raise ValueError("a pack holds at least two rows; send one row unpacked")
    return {
        "model": options.model,
        "messages": [
            {"role": "system", "content": system or packed_system_message(task)},
            {"role": "user", "content": packed_user_message(task, rows)},
        ],
        "do_sample": False,
        "max_tokens": packed_max_tokens(options.max_tokens, len(rows)),
        "response_format": {"type": "json_object"},
    }


def packed_max_tokens(per_row: int, rows: int) -> int:
    """A packed answer may take what each row's answer alone may take, up to the model's limit, so
    packing does not cut answers an unpacked run would get whole (billing is by tokens used)."""
    return max(per_row, min(MAX_OUTPUT_TOKENS, per_row * rows))


def split_answer(content: str | None, finish_reason: str | None, count: int,
                 validator: jsonschema_rs.Validator) -> list[Valid | Reask]:
    """One verdict per item of a pack of ``count``: ``Valid`` for a record the schema accepts, else a
    ``Reask`` saying why (the row is then asked again alone). A cut, filtered or unparseable answer
    leaves every item to be asked again: nothing in it can be told apart safely."""
    whole = judge(content, finish_reason, _ANY_OBJECT)
    if not isinstance(whole, Valid):
        code = whole.code if isinstance(whole, Reask) else "pack_filtered"
        return [Reask(code, ("the packed answer could not be used",)) for _ in range(count)]
    answer = whole.data
    twice = duplicated_keys(content or "")
    verdicts: list[Valid | Reask] = []
    for position in range(count):
        record = answer.get(label(position))
        if label(position) in twice:  # which of its records is this item's cannot be told
            verdicts.append(Reask("pack_invalid", (f"/{label(position)}: named twice in the packed answer",)))
            continue
        if record is None:
            verdicts.append(Reask("pack_missing", (f"no record for {label(position)}",)))
            continue
        if not isinstance(record, dict):
            verdicts.append(Reask("pack_invalid", (f"/{label(position)}: not an object",)))
            continue
        errors = schema_errors(record, validator)
        verdicts.append(Reask("pack_invalid", errors) if errors else Valid(record))
    return verdicts


def record_weights(verdicts: Sequence[Valid | Reask]) -> list[int]:
    """How much of a packed answer each item's record took (its compact JSON length; 0 if unusable)."""
    return [len(orjson.dumps(v.data)) if isinstance(v, Valid) else 0 for v in verdicts]


@dataclass(frozen=True)
class Share:
    """One row's part of a packed request's usage."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def share_usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int,
                prompt_weights: Sequence[int], completion_weights: Sequence[int]) -> list[Share]:
    """Split a packed request's usage among its rows so each part adds up to the request's exactly.

    Prompt tokens (the system message included) go in proportion to each item's own prompt tokens,
    cached tokens likewise (never more than the row's prompt share), completion tokens in proportion
    to each record's length; with no usable weight the split is even. Remainders go by the largest
    fraction (ties: the earlier row)."""
    if len(prompt_weights) != len(completion_weights):
        raise ValueError("one prompt weight and one completion weight per row")
    prompts = split_tokens(prompt_tokens, prompt_weights)
    completions = split_tokens(completion_tokens, completion_weights)
    cached = _capped_split(min(cached_tokens, prompt_tokens), prompt_weights, prompts)
    return [Share(p, c, k) for p, c, k in zip(prompts, completions, cached, strict=True)]


def split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder); even when all are 0."""
    if not weights:
        return []
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("tokens and weights are never negative")
    used = list(weights) if sum(weights) > 0 else [1] * len(weights)
    whole = sum(used)
    parts = [total * w // whole for w in used]
    order = sorted(range(len(used)), key=lambda i: (-(total * used[i] % whole), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _capped_split(total: int, weights: Sequence[int], caps: Sequence[int]) -> list[int]:
    parts = [min(p, cap) for p, cap in zip(split_tokens(total, weights), caps, strict=True)]
    left = total - sum(parts)
    for i, cap in enumerate(caps):  # what a rounding pushed over a row's cap goes to rows with room
        take = min(left, cap - parts[i])
        parts[i] += take
        left -= take
    return parts


def packed_prompt_weights(task: TaskSpec, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each item's own prompt tokens: the weights the prompt side of :func:`share_usage` uses."""
    return [max(1, item_tokens(task, row)) for row in rows]


def _framed(item_label: str, text: str) -> str:
    return f"{ITEM_OPEN.format(label=item_label)}\n{text}\n{ITEM_CLOSE}"


