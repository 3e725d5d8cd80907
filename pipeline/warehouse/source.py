"""The enriched table as an export source: checked once, described by a small value.

An enriched table (docs/contracts.md §3) is identified in the warehouse by ``(_task, _record_id)``.
``open_source`` refuses anything that cannot be merged on that identity: a missing file, a file that
is not Parquet, missing meta columns, null or duplicate identities, and two columns whose names
differ only in case (an input ``Summary`` beside the extracted ``summary``): DuckDB and dlt
destinations fold identifiers and unquoted PostgreSQL queries do too, so one of the two would be
renamed or read in the other's place. It reads only the two identity columns and ``_run_id``,
lazily, so a large table is never held in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.warehouse.errors import SourceError

KEY_COLUMNS: tuple[str, str] = ("_task", "_record_id")
RUN_ID_COLUMN = "_run_id"
RUNS_TABLE = "runs"
_MAX_IDENTIFIER = 63
_NOT_ENRICHED = "not an enriched table: run `glm-extract run` first"


@dataclass(frozen=True)
class EnrichedSource:
    """What the targets need to know about an enriched Parquet file."""

    path: Path
    schema: pa.Schema
    rows: int
    tasks: tuple[str, ...]
    run_ids: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


def open_source(path: Path) -> EnrichedSource:
    """Check ``path`` is an enriched table with a unique, non-null identity and describe it."""
    schema, rows = _read_metadata(path)
    missing = [c for c in KEY_COLUMNS if c not in schema.names]
    if missing:
        raise SourceError(f"{path} has no {', '.join(missing)} column: {_NOT_ENRICHED}")
    _check_case(schema.names, path)
    frame = pl.scan_parquet(path)
    _check_identity(frame, path)
    return EnrichedSource(
        path=path,
        schema=schema,
        rows=rows,
        tasks=_distinct(frame, "_task"),
        run_ids=_distinct(frame, RUN_ID_COLUMN) if RUN_ID_COLUMN in schema.names else (),
    )


def table_name_for(source: EnrichedSource, override: str | None, fallback_task: str | None) -> str:
    """The table to merge into: ``override``, else the (single) task's name as an identifier."""
    if override:
        name = override
    elif len(source.tasks) == 1:
        name = source.tasks[0]
    elif not source.tasks and fallback_task:
        name = fallback_task
    elif not source.tasks:
        raise SourceError(f"{source.path} has no rows and no summary naming its task: pass --table")
    else:
        raise SourceError(f"{source.path} holds {len(source.tasks)} tasks {source.tasks}: pass --table")
    return _checked_table_name(sanitise_identifier(name))


def sanitise_identifier(name: str) -> str:
    """Lower-case ``[a-z0-9_]`` only, not starting with a digit, at most 63 characters."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_") or "task"
    if cleaned[0].isdigit():
        cleaned = "t_" + cleaned
    return cleaned[:_MAX_IDENTIFIER]


def _checked_table_name(name: str) -> str:
    if name == RUNS_TABLE:
        raise SourceError(f"table name {name!r} is reserved for the run audit table: pass another --table")
    return name


def _read_metadata(path: Path) -> tuple[pa.Schema, int]:
    if not path.is_file():
        raise SourceError(f"{path}: no such file: run `glm-extract run` first or pass --output")
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema(), meta.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path} is not a Parquet file ({exc})") from exc


def _check_case(names: list[str], path: Path) -> None:
    """Refuse two columns whose names are equal but for case; never pick one of them."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise SourceError(
                f"{path} has columns {other!r} and {name!r}, which differ only in case: warehouses fold "
                "case, so one would be renamed or read as the other. Rerun with `glm-extract run --output-prefix "
                "x_` to give the extraction columns other names, or rename the input column; nothing was written"
            )


def _check_identity(frame: pl.LazyFrame, path: Path) -> None:
    keys = [pl.col(c) for c in KEY_COLUMNS]
    nulls = frame.filter(pl.any_horizontal(k.is_null() for k in keys)).select(pl.len()).collect().item()
    if nulls:
        raise SourceError(f"{path} has {nulls} rows with a null _task or _record_id: {_NOT_ENRICHED}")
    dup = frame.group_by(KEY_COLUMNS).len().filter(pl.col("len") > 1).head(1).collect()
    if dup.height:
        task, record, count = dup.row(0)
        raise SourceError(
            f"{path} has {count} rows for (_task, _record_id) = ({task!r}, {record!r}): "
            "the identity must be unique; check the input's id column"
        )


def _distinct(frame: pl.LazyFrame, column: str) -> tuple[str, ...]:
    values = frame.select(pl.col(column).cast(pl.String).drop_nulls().unique().sort()).collect()
    return tuple(values.to_series().to_list())
