"""Warehouse export: merge an enriched table into DuckDB, PostgreSQL or any dlt destination.

``export_table`` is the one entry point (the CLI's ``export`` command and the flow's last step call
it). The identity of a row is ``(_task, _record_id)``; a re-export updates rows in place, so
exporting the same table twice leaves the same row count as exporting it once. A stored ok answer
is not replaced by a row that is not ok, nor a newer run's row by an older run's (:mod:`keep`). One table per task,
plus a ``runs`` table with one row per run id. See docs/warehouse.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.warehouse.errors import (
    AccessDenied,
    ConnectionFailed,
    LoadFailed,
    SchemaClash,
    SourceError,
    TargetError,
    TargetUnreachable,
    WarehouseError,
)
from pipeline.warehouse.job import ExportJob
from pipeline.warehouse.result import ExportResult
from pipeline.warehouse.runs import load_summary, run_records, summary_mismatch, summary_origin, to_arrow
from pipeline.warehouse.source import open_source, table_name_for
from pipeline.warehouse.targets import (
    DEFAULT_TARGET,
    DltTarget,
    DuckDBTarget,
    PostgresTarget,
    Target,
    parse_target,
    redact_dsn,
)

__all__ = [
    "DEFAULT_TARGET",
    "AccessDenied",
    "ConnectionFailed",
    "DltTarget",
    "DuckDBTarget",
    "ExportResult",
    "LoadFailed",
    "PostgresTarget",
    "SchemaClash",
    "SourceError",
    "Target",
    "TargetError",
    "TargetUnreachable",
    "WarehouseError",
    "export_table",
    "parse_target",
    "redact_dsn",
]


def export_table(
    output_path: Path | str,
    target: Target | str | Path = DEFAULT_TARGET,
    *,
    summary: Mapping[str, Any] | Path | None = None,
    table: str | None = None,
    replace: bool = False,
) -> ExportResult:
    """Merge the enriched table at ``output_path`` and its run row into ``target``.

    ``summary`` is the run summary (a mapping, or the path of its JSON); None looks for
    ``<output>.summary.json`` next to the table and, failing that, derives the run row from the
    table's meta columns. ``table`` overrides the table name (default: the task's name).
    ``target`` is a ``--to`` string, a DuckDB file path or a target value.
    A matched row is kept as stored when it holds an ok answer and the incoming row does not, or
    when it comes from a newer run (see :mod:`pipeline.warehouse.keep`); ``replace`` overwrites
    every matched row instead (DuckDB and PostgreSQL; dlt destinations always overwrite).
    A summary whose run id is none of the table's ``_run_id`` values is not used: the runs row is
    derived from the table and the result line carries a warning.
    Raises a :class:`WarehouseError` whose message is one actionable line; nothing is half-loaded.
    """
    resolved = _resolve(target)
    path = Path(output_path)
    source = open_source(path)
    loaded = load_summary(path, summary)
    task = loaded.get("task") if loaded else None
    name = table_name_for(source, table, str(task) if task else None)
    mismatch = summary_mismatch(source, loaded, summary_origin(path, summary))
    runs = to_arrow(run_records(source, None if mismatch else loaded, name, dt.datetime.now(dt.UTC)))
    job = ExportJob(source=source, table=name, runs=runs, replace=replace, warnings=(mismatch,) if mismatch else ())
    return _dispatch(resolved, job)


def _resolve(target: Target | str | Path) -> Target:
    """A target value from a ``--to`` string, a DuckDB file path, or a target value."""
    if isinstance(target, str):
        return parse_target(target)
    if isinstance(target, Path):
        return DuckDBTarget(path=target)
    if isinstance(target, DuckDBTarget | PostgresTarget | DltTarget):
        return target
    raise TargetError(f"not an export target: {type(target).__name__}")


def _dispatch(target: Target, job: ExportJob) -> ExportResult:
    """Hand the job to the target's module; imported lazily so dlt loads only when asked for."""
    match target:
        case DuckDBTarget():
            from pipeline.warehouse.duckdb_target import export_duckdb

            return export_duckdb(target, job)
        case PostgresTarget():
            from pipeline.warehouse.postgres_target import export_postgres

            return export_postgres(target, job)
        case DltTarget():
            from pipeline.warehouse.dlt_target import export_dlt

            return export_dlt(target, job)
