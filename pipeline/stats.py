"""Counters of a run: what was sent, answered, paid and how rows ended (for the summary)."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.glm.retry import AttemptLog
from pipeline.outcomes import STATUSES
from pipeline.summary import ErrorCount
from pipeline.tables import RowMeta

MAX_EXAMPLES = 5


#: What an answer's cost is booked to (the summary's ``cost_split``): the row's first request answered
#: on its first attempt, an answer that came only after retries, or an answer to a re-ask; the
#: prompt tokens the platform served from its cache are booked apart, at the cached price.
COST_KINDS = ("first_attempts", "retries", "reasks", "cached_tokens")


@dataclass
class RunStats:
    """Mutable tallies; one per run (a Prefect shard task keeps its own and they are merged)."""

    requests_sent: int = 0
    answered: int = 0
    retries: int = 0
    rate_limited: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cny: float = 0.0
    answers_cost_cny: float = 0.0  # what the rows' answers cost when they were paid (this run or before)
    first_attempts_cny: float = 0.0
    retries_cny: float = 0.0
    reasks_cny: float = 0.0
    cached_tokens_cny: float = 0.0
    from_journal: int = 0
    rows: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the platform's prefix cache
    synthetic_answers: int = 0  # answers an emulator gave (X-GLM-Emulator), whatever the URL
    usage_counted: int = 0  # answers without usable usage: their tokens are our rule's count
    first_answers: int = 0  # answers to a request as rendered (not to a re-ask)
    rule_prompt_tokens: int = 0  # their prompts by the rule of thumb: what `glm-extract estimate` counts
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    status_counts: Counter[str] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, list[str]] = field(default_factory=dict)

    def note_attempts(self, log: AttemptLog) -> None:
        self.requests_sent += log.attempts
        self.retries += max(0, log.attempts - 1)
        self.rate_limited += log.rate_limited

    def note_cached(self, cached: int, *, synthetic: bool) -> None:
        """Of an answer's prompt tokens, those served from the cache; whether an emulator gave it."""
        self.cached_tokens += cached
        self.synthetic_answers += synthetic

    def note_answer(self, latency_ms: float, prompt: int, completion: int, cost: float, *,
                    spent_on: str = "first_attempts", cached_cny: float = 0.0) -> None:
        """One paid answer; ``spent_on`` is one of :data:`COST_KINDS`, ``cached_cny`` the part of
        ``cost`` that paid for cached prompt tokens."""
        self.answered += 1
        self.latencies_ms.append(latency_ms)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_cny += cost
        name = f"{spent_on}_cny"
        setattr(self, name, getattr(self, name) + cost - cached_cny)
        self.cached_tokens_cny += cached_cny

    def cost_split(self) -> dict[str, float]:
        """The run's cost by what it was spent on (sums to ``cost_cny``)."""
        return {kind: round(getattr(self, f"{kind}_cny"), 6) for kind in COST_KINDS}

    def note_rows(self, record_ids: Sequence[str], metas: Sequence[RowMeta]) -> None:
        """Count how the rows of a shard ended, keeping a few example ids per error code."""
        self.rows += len(metas)
        for record_id, meta in zip(record_ids, metas, strict=True):
            self.status_counts[meta.status] += 1
            self.answers_cost_cny += meta.paid_cost_cny
            if meta.from_journal:
                self.from_journal += 1
            if meta.status != "ok" and meta.error_code:
                self.error_counts[meta.error_code] += 1
                _keep_example(self.error_examples.setdefault(meta.error_code, []), record_id)

    def merge(self, other: RunStats) -> None:
        """Add another shard's tallies into this one."""
        for name in _SCALAR_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies_ms.extend(other.latencies_ms)
        self.status_counts.update(other.status_counts)
        self.error_counts.update(other.error_counts)
        for code, ids in other.error_examples.items():
            mine = self.error_examples.setdefault(code, [])
            for record_id in ids:
                _keep_example(mine, record_id)

    def status_table(self) -> dict[str, int]:
        return {status: self.status_counts.get(status, 0) for status in STATUSES}

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return round(ordered[index], 1)

    def errors(self) -> tuple[ErrorCount, ...]:
        """Error codes, most frequent first, with a few example record ids each."""
        return tuple(ErrorCount(code, count, tuple(self.error_examples.get(code, ())))
                     for code, count in self.error_counts.most_common())


def _keep_example(examples: list[str], record_id: str) -> None:
    """Keep the ``MAX_EXAMPLES`` smallest ids, sorted: the same examples whichever shard ends first."""
    if record_id not in examples:
        examples.append(record_id)
        examples.sort()
        del examples[MAX_EXAMPLES:]


_SCALAR_FIELDS = ("requests_sent", "answered", "retries", "rate_limited", "reasks", "prompt_tokens",
                  "completion_tokens", "cost_cny", "answers_cost_cny", "first_attempts_cny", "retries_cny",
                  "reasks_cny", "cached_tokens_cny", "from_journal", "rows", "cached_tokens", "synthetic_answers",
                  "first_answers", "rule_prompt_tokens", "usage_counted")


def stats_to_dict(stats: RunStats) -> dict[str, Any]:
    """JSON-ready form, for passing a shard's tallies between processes (e.g. Prefect tasks)."""
    data: dict[str, Any] = {name: getattr(stats, name) for name in _SCALAR_FIELDS}
    data["latencies_ms"] = list(stats.latencies_ms)
    data["status_counts"] = dict(stats.status_counts)
    data["error_counts"] = dict(stats.error_counts)
    data["error_examples"] = {k: list(v) for k, v in stats.error_examples.items()}
    return data


def stats_from_dict(data: dict[str, Any]) -> RunStats:
    """Inverse of :func:`stats_to_dict`."""
    stats = RunStats(**{name: data.get(name, 0) for name in _SCALAR_FIELDS})
    stats.latencies_ms.extend(data["latencies_ms"])
    stats.status_counts.update(data["status_counts"])
    stats.error_counts.update(data["error_counts"])
    stats.error_examples.update({k: list(v) for k, v in data["error_examples"].items()})
    return stats
