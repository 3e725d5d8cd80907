"""Estimate-only runs: how many requests a run would send and what they would cost, sending nothing.

Rows are rendered exactly as the engine renders them, so the content keys match the journal's:
an answer already paid for is counted as free. Prompt tokens follow the platform's rule of thumb
(``emulator.tokens``); completion tokens are the mean of this shard's journaled answers,
else :data:`DEFAULT_COMPLETION_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import io
from pipeline.journal import Journal
from pipeline.keys import request_key
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.runner import PreparedRun
from pipeline.settings import Settings
from pipeline.tables import prompt_rows
from pipeline.tasks import TaskSpec
from pipeline.tokens import count_prompt_tokens

DEFAULT_COMPLETION_TOKENS = 400


@dataclass
class Estimate:
    """Counts of an estimate-only run (JSON-ready through :meth:`as_dict`)."""

    task: str
    input: str
    rows: int = 0
    shards: int = 0
    skipped: int = 0
    requests: int = 0
    from_journal: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cny: float = 0.0
    price_cny_per_mtok: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "estimate_only": True, "cost_cny": round(self.cost_cny, 6)}


def needs_request(task: TaskSpec, row: Mapping[str, Any]) -> bool:
    """The engine's local rule: blank text or text over ``max_input_chars`` is never sent."""
    text = row.get(task.text_column)
    if text is None or (isinstance(text, str) and not text.strip()):
        return False
    return not (task.max_input_chars is not None and isinstance(text, str) and len(text) > task.max_input_chars)


def estimate_run(prepared: PreparedRun, settings: Settings, shards: Sequence[io.ShardSpec]) -> Estimate:
    """Render every row shard by shard; count requests, journal hits and tokens."""
    estimate = Estimate(prepared.task.name, prepared.request.input, shards=len(shards),
                        price_cny_per_mtok=settings.price_cny_per_mtok)
    journal = Journal(settings.journal_path) if settings.journal_path.exists() else None
    try:
        for spec in shards:
            add_shard(estimate, prepared.task, settings, spec, journal)
    finally:
        if journal is not None:
            journal.close()
    estimate.cost_cny = (estimate.prompt_tokens + estimate.completion_tokens) * settings.price_cny_per_mtok / 1e6
    return estimate


def add_shard(estimate: Estimate, task: TaskSpec, settings: Settings, spec: io.ShardSpec,
              journal: Journal | None) -> None:
    """Add one shard's rows to ``estimate``."""
    options = RenderOptions(model=settings.model, mode=settings.mode, max_tokens=settings.max_tokens)
    system = system_message(task, settings.mode)
    bodies: dict[str, dict[str, Any]] = {}
    rows = prompt_rows(io.read_shard(spec), task)  # keyed by template name, mapped columns applied
    for row in rows:
        if needs_request(task, row):
            body = render_request(task, row, options, system)
            bodies[request_key(body)] = body
    known = journal.lookup(bodies) if journal is not None else {}
    fresh = [body for key, body in bodies.items() if key not in known]
    answered = [entry.completion_tokens for entry in known.values() if entry.completion_tokens]
    per_answer = round(sum(answered) / len(answered)) if answered else DEFAULT_COMPLETION_TOKENS
    estimate.rows += len(rows)
    estimate.skipped += sum(not needs_request(task, row) for row in rows)
    estimate.requests += len(fresh)
    estimate.from_journal += len(known)
    estimate.prompt_tokens += sum(count_prompt_tokens(b["messages"], b.get("tools")) for b in fresh)
    estimate.completion_tokens += per_answer * len(fresh)
