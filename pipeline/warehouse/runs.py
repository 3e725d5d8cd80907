"""The ``runs`` audit table: one row per run id, from the run summary or, failing that, the table.

The summary (docs/contracts.md §4, ``<output>.summary.json``) is the authority on a run. When it is
missing — a table copied without its summary, an older run — the row is derived from the meta
columns of the enriched table (counts, tokens, cost, latency percentiles, model …); what only the
summary knows (times, retries, endpoint, limiter) stays null and ``derived_from`` says ``table``.

Two bills per run: ``cost_cny`` / ``prompt_tokens`` / ``completion_tokens`` are what this run spent
(0 on a rerun answered from the journal), ``answers_cost_cny`` / ``answers_prompt_tokens`` /
``answers_completion_tokens`` what the answers it used cost when they were paid, by whichever run
(the summary's ``answers_cost_cny``, the rows' ``_paid_*`` columns). What the summary lacks of the
second bill is summed from the table's rows of that run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from pipeline.outcomes import STATUSES
from pipeline.summary import audit_values
from pipeline.warehouse.errors import SourceError
from pipeline.warehouse.source import RUN_ID_COLUMN, EnrichedSource

_TS = pa.timestamp("us", tz="UTC")
RUNS_KEY = ("run_id",)
RUNS_SCHEMA = pa.schema(
    [pa.field("run_id", pa.string(), nullable=False)]
    + [pa.field(name, pa.string()) for name in ("task", "input", "output")]
    + [pa.field("started_at", _TS), pa.field("finished_at", _TS), pa.field("seconds", pa.float64())]
    + [pa.field(name, pa.int64()) for name in ("rows", "ok", "invalid", "failed", "filtered", "skipped")]
    + [pa.field(name, pa.int64()) for name in ("requests_sent", "from_journal", "retries", "reasks")]
    + [pa.field(name, pa.int64()) for name in ("prompt_tokens", "completion_tokens")]
    + [pa.field(name, pa.int64()) for name in ("answers_prompt_tokens", "answers_completion_tokens")]
    + [pa.field(name, pa.float64()) for name in ("cost_cny", "answers_cost_cny", "p50_ms", "p95_ms")]
    + [pa.field(name, pa.string()) for name in ("model", "prompt_version", "schema_id", "endpoint")]
    + [pa.field("offline_emulator", pa.bool_()), pa.field("limiter", pa.string())]
    + [pa.field("table_name", pa.string()), pa.field("derived_from", pa.string())]
    + [pa.field("exported_at", _TS)]
)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One row of the ``runs`` table; field order and names are those of ``RUNS_SCHEMA``."""

    run_id: str
    task: str | None = None
    input: str | None = None
    output: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    seconds: float | None = None
    rows: int | None = None
    ok: int | None = None
    invalid: int | None = None
    failed: int | None = None
    filtered: int | None = None
    skipped: int | None = None
    requests_sent: int | None = None
    from_journal: int | None = None
    retries: int | None = None
    reasks: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answers_prompt_tokens: int | None = None
    answers_completion_tokens: int | None = None
    cost_cny: float | None = None
    answers_cost_cny: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    model: str | None = None
    prompt_version: str | None = None
    schema_id: str | None = None
    endpoint: str | None = None
    offline_emulator: bool | None = None
    limiter: str | None = None
    table_name: str | None = None
    derived_from: str | None = None
    exported_at: dt.datetime | None = None


def summary_path(output: Path) -> Path:
    """Where a run writes its summary: ``<output>.summary.json`` (docs/contracts.md §4)."""
    return output.with_name(output.name + ".summary.json")


def load_summary(output: Path, summary: Mapping[str, Any] | Path | None) -> Mapping[str, Any] | None:
    """The run summary given, read from the path given, or found next to ``output``; else None."""
    if isinstance(summary, Mapping):
        return summary
    path = summary if summary is not None else summary_path(output)
    if path.is_file():
        return _read_json(path)
    if summary is not None:
        raise SourceError(f"{summary}: no such summary file")
    return None


def summary_origin(output: Path, summary: Mapping[str, Any] | Path | None) -> str:
    """Where :func:`load_summary` takes the summary from, for a message."""
    if isinstance(summary, Mapping):
        return "the summary passed in"
    return str(summary if summary is not None else summary_path(output))


def summary_mismatch(source: EnrichedSource, summary: Mapping[str, Any] | None, origin: str) -> str | None:
    """Why ``summary`` is not this table's (its run id is none of the table's ``_run_id``), else None.

    A summary left beside a table replaced by another run's output (``mv new.parquet out.parquet``)
    would name a run whose rows are not in the table, while the table's own run got no runs row;
    the export then derives the runs row from the table instead. ``origin``: see :func:`summary_origin`."""
    run_id = summary.get("run_id") if summary else None
    if not run_id or not source.run_ids or str(run_id) in source.run_ids:
        return None
    ids = source.run_ids
    table_runs = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return (f"{origin} is the summary of run {run_id}, not of the table's run {table_runs}: "
            "not used, the runs row is derived from the table")


def run_records(
    source: EnrichedSource, summary: Mapping[str, Any] | None, table: str, now: dt.datetime
) -> list[RunRecord]:
    """The runs rows this export writes: the summary's run, or one per ``_run_id`` in the table."""
    if summary is not None and summary.get("run_id"):
        record = from_summary(summary, table=table, exported_at=now)
        return [_with_paid_totals(record, source)]
    return from_table(source, table=table, exported_at=now)


def from_summary(summary: Mapping[str, Any], *, table: str, exported_at: dt.datetime) -> RunRecord:
    """Flatten a run summary (docs/contracts.md §4) into a runs row; what it lacks stays null."""
    found = audit_values(summary)
    values: dict[str, Any] = {name: _READERS[_KINDS[name]](value) for name, value in found.items()}
    return RunRecord(run_id=str(summary["run_id"]), **values, table_name=table, derived_from="summary",
                     exported_at=exported_at)


def from_table(source: EnrichedSource, *, table: str, exported_at: dt.datetime) -> list[RunRecord]:
    """One runs row per ``_run_id`` of the table, aggregated from its meta columns."""
    frame = pl.scan_parquet(source.path)
    names = set(source.columns)
    run_id = pl.col(RUN_ID_COLUMN).cast(pl.String) if RUN_ID_COLUMN in names else pl.lit(None, pl.String)
    fallback = f"unknown:{source.path.name}"
    grouped = frame.with_columns(run_id.fill_null(fallback).alias("run_id")).group_by("run_id")
    rows = grouped.agg(_aggregations(names)).sort("run_id").collect().to_dicts()
    return [
        RunRecord(**row, output=str(source.path), table_name=table, derived_from="table", exported_at=exported_at)
        for row in rows
    ]


def to_arrow(records: list[RunRecord]) -> pa.Table:
    """The records as an Arrow table with ``RUNS_SCHEMA``."""
    return pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=RUNS_SCHEMA)


def _aggregations(names: set[str]) -> list[pl.Expr]:
    exprs = [pl.len().cast(pl.Int64).alias("rows"), pl.col("_task").cast(pl.String).first().alias("task")]
    if "_status" in names:
        exprs += [(pl.col("_status") == s).sum().cast(pl.Int64).alias(s) for s in STATUSES]
    sums = {"_attempts": "requests_sent", "_from_journal": "from_journal", "_reasks": "reasks"}
    sums |= {"_prompt_tokens": "prompt_tokens", "_completion_tokens": "completion_tokens"}
    exprs += [pl.col(c).sum().cast(pl.Int64).alias(alias) for c, alias in sums.items() if c in names]
    exprs += _paid_aggregations(names)
    if "_cost_cny" in names:
        exprs.append(pl.col("_cost_cny").sum().cast(pl.Float64).alias("cost_cny"))
    if "_latency_ms" in names:
        latency = pl.col("_latency_ms").cast(pl.Float64)
        exprs += [latency.quantile(0.5).alias("p50_ms"), latency.quantile(0.95).alias("p95_ms")]
    firsts = {"_model": "model", "_prompt_version": "prompt_version", "_schema_id": "schema_id"}
    exprs += [pl.col(c).cast(pl.String).drop_nulls().first().alias(a) for c, a in firsts.items() if c in names]
    return exprs


def _paid_aggregations(names: set[str]) -> list[pl.Expr]:
    """The second bill: what the rows' answers cost when they were paid (``_paid_*`` columns)."""
    exprs = [
        pl.col(c).sum().cast(pl.Int64).alias(alias)
        for c, alias in (("_paid_prompt_tokens", "answers_prompt_tokens"),
                         ("_paid_completion_tokens", "answers_completion_tokens"))
        if c in names
    ]
    if "_paid_cost_cny" in names:
        exprs.append(pl.col("_paid_cost_cny").sum().cast(pl.Float64).alias("answers_cost_cny"))
    return exprs


def _with_paid_totals(record: RunRecord, source: EnrichedSource) -> RunRecord:
    """``record`` with the parts of the paid bill the summary lacks, summed from the run's rows."""
    names = set(source.columns)
    exprs = _paid_aggregations(names)
    if not exprs:
        return record
    frame = pl.scan_parquet(source.path)
    if RUN_ID_COLUMN in names:
        frame = frame.filter(pl.col(RUN_ID_COLUMN).cast(pl.String) == record.run_id)
    totals = frame.select(exprs).collect().to_dicts()[0]
    missing = {k: v for k, v in totals.items() if getattr(record, k) is None and v is not None}
    return dataclasses.replace(record, **missing) if missing else record


def _read_json(path: Path) -> Mapping[str, Any]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SourceError(f"{path} is not a readable run summary ({exc})") from exc
    if not isinstance(value, dict):
        raise SourceError(f"{path} is not a run summary: expected a JSON object")
    return value


_KINDS = {f.name: str(f.type) for f in dataclasses.fields(RunRecord)}  # e.g. "int | None"


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


#: How a summary value becomes a runs column of each type (anything else: null).
_READERS = {"str | None": _str, "int | None": _int, "float | None": _float, "bool | None": _bool,
            "dt.datetime | None": _time}
