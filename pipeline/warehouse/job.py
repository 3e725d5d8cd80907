"""One export, ready for a target: the checked source, the table name and the runs rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.warehouse.keep import Kept
from pipeline.warehouse.source import EnrichedSource


@dataclass(frozen=True)
class ExportJob:
    """Everything a target module needs; built once by ``export_table``.

    ``replace`` turns off the keep rule (:mod:`keep`): every matched row is overwritten.
    ``warnings`` are one-line notes the result line carries (a summary of another run, say)."""

    source: EnrichedSource
    table: str
    runs: pa.Table
    replace: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.runs.column("run_id").to_pylist())

    @property
    def run_started(self) -> dict[str, dt.datetime | None]:
        """``started_at`` of this export's runs rows, by run id (null when the summary lacked it)."""
        ids, starts = self.runs.column("run_id").to_pylist(), self.runs.column("started_at").to_pylist()
        return {str(i): s for i, s in zip(ids, starts, strict=True)}


@dataclass
class NulTally:
    """Rows whose NUL characters were removed on the way into PostgreSQL (see ``pg_copy``)."""

    rows: int = 0
    examples: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    keep: int = 10

    def add(self, ids: list[str], columns: tuple[str, ...]) -> None:
        self.rows += len(ids)
        self.examples.extend(ids[: max(0, self.keep - len(self.examples))])
        self.columns.extend(c for c in columns if c not in self.columns)


@dataclass(frozen=True)
class MergeCounts:
    """What one merge did to one table."""

    rows: int
    inserted: int
    updated: int
    table_rows: int
    added_columns: tuple[str, ...] = ()
    kept: Kept = field(default_factory=Kept)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated - self.kept.total
