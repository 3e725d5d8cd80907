"""The run summary: one typed model, written once as ``<output>.summary.json`` (docs/contracts.md §4).

Every reader — the CLI's table, the flow's log line, artifacts and failure check, the warehouse's
``runs`` row — reads these fields, never the JSON by string keys. :meth:`RunSummary.to_dict` is the
one serialisation (the contract's keys, in its order); :meth:`RunSummary.from_dict` reads it back.
A summary file written by hand or by an older version may lack parts: :func:`audit_values` reads
what it has, by the same key paths, for the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.outcomes import STATUSES, ExcessFailures, excess_failures


@dataclass(frozen=True)
class Requests:
    """What was sent and what came back (``sent`` counts every attempt)."""

    sent: int = 0
    answered: int = 0
    from_journal: int = 0  # rows whose answer an earlier request paid for
    retries: int = 0
    rate_limited: int = 0
    reasks: int = 0


@dataclass(frozen=True)
class Tokens:
    """Usage the endpoint reported for this run's answers; ``cached`` is part of ``prompt``."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    counted_by_rule: int = 0  # answers whose usage was missing or unusable: their tokens are our rule's count

    def describe(self) -> str:
        """One line: the counts, and how many answers carried no usage the endpoint vouched for."""
        line = f"prompt={self.prompt} completion={self.completion}"
        if self.counted_by_rule:
            line += (f"  ({self.counted_by_rule} answers carried no usable usage: their tokens are our "
                     "rule's count, not the endpoint's bill)")
        return line


@dataclass(frozen=True)
class CostSplit:
    """``cost_cny`` by what it was spent on (the four add up to it)."""

    first_attempts: float = 0.0
    retries: float = 0.0
    reasks: float = 0.0
    cached_tokens: float = 0.0

    def describe(self) -> str:
        """``first attempts 0.001200, retries 0.000000, …`` (CNY)."""
        return ", ".join(f"{f.name.replace('_', ' ')} {getattr(self, f.name):.6f}" for f in fields(self))


@dataclass(frozen=True)
class Latency:
    """Percentiles of answered requests (None when nothing was answered)."""

    p50: float | None = None
    p95: float | None = None


@dataclass(frozen=True)
class ErrorCount:
    """One error code, how many rows ended with it, a few of their record ids."""

    code: str
    count: int
    example_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EstimateCheck:
    """The uncalibrated estimate of the answered requests against the usage reported."""

    requests: int = 0
    estimated_tokens: int = 0
    actual_tokens: int = 0
    error: float | None = None


@dataclass(frozen=True)
class BudgetCheck:
    """A run with ``--budget-cny``: what it spent as the budget counts money, at which cached price,
    and how far over the limit it ended (0 unless the platform billed more than was reserved)."""

    limit_cny: float
    spent_cny: float  # cost_cny, with cached tokens at cached_price_cny_per_mtok
    cached_price_cny_per_mtok: float  # the full input price unless the user set the cached price
    over_cny: float = 0.0

    def table_line(self) -> str:
        """The budget as the end-of-run table shows it."""
        over = f"; OVER by {self.over_cny:.6f} CNY" if self.over_cny > 0 else ""
        return (f"limit {self.limit_cny} CNY, spent {self.spent_cny:.6f} as the budget counts it (cached tokens "
                f"at {self.cached_price_cny_per_mtok} CNY/M){over}")

    def describe(self) -> str:
        """One line: how far over its budget the run ended."""
        return (f"the run ended {self.over_cny:.6f} CNY over its budget of {self.limit_cny} CNY (spent "
                f"{self.spent_cny:.6f} CNY as the budget counts it): the platform billed more prompt tokens "
                "than were reserved; later reservations counted prompts as it did")


@dataclass(frozen=True)
class RunSummary:
    """One run, as it ended. Runs made by the Prefect flow also carry ``partition_date`` and ``shards``."""

    run_id: str
    task: str
    input: str
    output: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    seconds: float
    rows: int
    status_counts: Mapping[str, int]  # every status of STATUSES, in that order
    requests: Requests
    tokens: Tokens
    cost_cny: float
    answers_cost_cny: float  # what the rows' answers cost when they were paid, this run or earlier
    cost_split: CostSplit
    latency_ms: Latency
    rows_per_second: float | None
    model: str
    prompt_version: str
    schema_id: str
    endpoint: str  # glm, emulator or custom
    base_url: str  # without credentials
    offline_emulator: bool
    limiter: str
    synthetic: bool  # an emulator gave the answers (bundled or at a custom URL)
    concurrency: int
    errors: tuple[ErrorCount, ...] = ()
    estimate: EstimateCheck = field(default_factory=EstimateCheck)
    budget: BudgetCheck | None = None  # only for a run with a budget
    partition_date: str | None = None
    shards: int | None = None

    def count(self, status: str) -> int:
        """Rows that ended with ``status``."""
        return self.status_counts.get(status, 0)

    def excess_failures(self, allowed_ratio: float) -> ExcessFailures | None:
        """Too many failed rows for the run to count as done (see :mod:`pipeline.outcomes`)."""
        return excess_failures(self.status_counts, allowed_ratio)

    def for_partition(self, partition_date: str, shards: int) -> RunSummary:
        """This summary as a flow run reports it."""
        return replace(self, partition_date=partition_date, shards=shards)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of docs/contracts.md §4 (flow-only keys only when set)."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in _OPTIONAL:
                continue
            data[item.name] = _plain(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """Read back what :meth:`to_dict` wrote (KeyError/TypeError on anything else)."""
        parts: dict[str, Any] = {name: data[name] for name in _REQUIRED}
        parts |= {name: data.get(name) for name in _FLOW_ONLY}
        parts["status_counts"] = {status: int(data["status_counts"].get(status, 0)) for status in STATUSES}
        for name, kind in _NESTED.items():
            parts[name] = kind(**data[name])
        parts["errors"] = tuple(ErrorCount(str(e["code"]), int(e["count"]), tuple(e["example_ids"]))
                                for e in data["errors"])
        parts["estimate"] = EstimateCheck(**data["estimate"])
        budget = data.get("budget")
        parts["budget"] = BudgetCheck(**budget) if budget is not None else None
        return cls(**parts)


_FLOW_ONLY = ("partition_date", "shards")
_OPTIONAL = (*_FLOW_ONLY, "budget")  # keys written only when set
_NESTED: dict[str, type[Any]] = {"requests": Requests, "tokens": Tokens, "cost_split": CostSplit,
                                 "latency_ms": Latency}
_REQUIRED = tuple(f.name for f in fields(RunSummary)
                  if f.name not in {*_OPTIONAL, *_NESTED, "status_counts", "errors", "estimate"})


def _plain(value: Any) -> Any:
    """JSON-ready: nested parts as objects, tuples as lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


#: Where each audit value sits in a summary object: a ``runs`` column → its key path.
AUDIT_PATHS: dict[str, tuple[str, ...]] = {
    "task": ("task",), "input": ("input",), "output": ("output",),
    "started_at": ("started_at",), "finished_at": ("finished_at",), "seconds": ("seconds",), "rows": ("rows",),
    **{status: ("status_counts", status) for status in STATUSES},
    "requests_sent": ("requests", "sent"), "from_journal": ("requests", "from_journal"),
    "retries": ("requests", "retries"), "reasks": ("requests", "reasks"),
    "prompt_tokens": ("tokens", "prompt"), "completion_tokens": ("tokens", "completion"),
    "cost_cny": ("cost_cny",), "answers_cost_cny": ("answers_cost_cny",),
    "p50_ms": ("latency_ms", "p50"), "p95_ms": ("latency_ms", "p95"),
    "model": ("model",), "prompt_version": ("prompt_version",), "schema_id": ("schema_id",),
    "endpoint": ("endpoint",), "offline_emulator": ("offline_emulator",), "limiter": ("limiter",),
}


def audit_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a summary object holds of :data:`AUDIT_PATHS`, read leniently: a missing part is None, and
    a status missing from a present ``status_counts`` is 0 rows."""
    found: dict[str, Any] = {}
    for column, path in AUDIT_PATHS.items():
        node: Any = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if path[0] == "status_counts" and isinstance(node, Mapping) and node:
            found[column] = node.get(path[-1], 0)
        else:
            found[column] = node.get(path[-1]) if isinstance(node, Mapping) else None
    return found
