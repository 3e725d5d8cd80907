"""Two enriched tables of the same input side by side (pure): per field, how many rows changed and
by how much, and which rows (``glm-extract evaluate --compare A B``).

Rows are matched on ``_record_id``. A value counts as changed when its canonical JSON differs
(so a struct or a list changes when any part of it does, and null against a value is a change).
For numeric fields the mean of ``B - A`` over rows where both have a value is reported as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from pipeline.wording import plural

RECORD_ID = "_record_id"
STATUS = "_status"
CHANGES_SCHEMA = {RECORD_ID: pl.String, "field": pl.String, "a": pl.String, "b": pl.String}


@dataclass(frozen=True)
class FieldDelta:
    """One field over the rows both tables hold."""

    field: str
    rows: int
    changed: int
    mean_delta: float | None  # mean of B - A (numeric fields), else None

    @property
    def agreement(self) -> float | None:
        return None if self.rows == 0 else 1 - self.changed / self.rows


@dataclass(frozen=True)
class Comparison:
    """``changes``: one row per (record, field) whose value differs, values as JSON text."""

    rows_a: int
    rows_b: int
    common: int
    status_a: dict[str, int]
    status_b: dict[str, int]
    fields: tuple[FieldDelta, ...]
    changes: pl.DataFrame


def compare_outputs(a: pl.DataFrame, b: pl.DataFrame, fields: Sequence[str]) -> Comparison:
    """Compare ``fields`` of two enriched tables; raise ``ValueError`` naming what is missing."""
    for name, table in (("A", a), ("B", b)):
        missing = [c for c in (RECORD_ID, STATUS, *fields) if c not in table.columns]
        if missing:
            raise ValueError(f"table {name} lacks column(s) {', '.join(missing)}: "
                             "is it an enriched table of this task?")
    joined = a.select(RECORD_ID, *fields).join(b.select(RECORD_ID, *fields), on=RECORD_ID, how="inner",
                                               suffix="__b")
    ids = joined.get_column(RECORD_ID).to_list()
    deltas, changes = [], []
    for field in fields:
        left, right = joined.get_column(field).to_list(), joined.get_column(f"{field}__b").to_list()
        changed = 0
        for record, x, y in zip(ids, left, right, strict=True):
            tx, ty = _canonical(x), _canonical(y)
            if tx != ty:
                changed += 1
                changes.append((record, field, tx, ty))
        deltas.append(FieldDelta(field, len(ids), changed, _mean_delta(joined, field)))
    return Comparison(
        rows_a=a.height, rows_b=b.height, common=joined.height,
        status_a=_status_counts(a), status_b=_status_counts(b), fields=tuple(deltas),
        changes=pl.DataFrame(changes, schema=CHANGES_SCHEMA, orient="row"),
    )


def _canonical(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _mean_delta(joined: pl.DataFrame, field: str) -> float | None:
    if not (joined.schema[field].is_numeric() and joined.schema[f"{field}__b"].is_numeric()):
        return None
    value = joined.select((pl.col(f"{field}__b") - pl.col(field)).mean()).item()
    return None if value is None else float(value)


def _status_counts(table: pl.DataFrame) -> dict[str, int]:
    counts = table.get_column(STATUS).value_counts()
    return {str(status): int(n) for status, n in counts.sort(STATUS).iter_rows()}


def render_comparison(comparison: Comparison, names: tuple[str, str], limit: int = 20) -> str:
    """Markdown: the rows matched, statuses, one line per field, then the first ``limit`` changes."""
    a, b = names
    lines = [
        f"Compared `{a}` (A, {plural(comparison.rows_a, 'row')}) with `{b}` (B, {plural(comparison.rows_b, 'row')}): "
        f"{plural(comparison.common, 'row')} in both.",
        "",
        f"Statuses: A {_statuses(comparison.status_a)} · B {_statuses(comparison.status_b)}",
        "",
        "| field | rows | changed | agreement | mean B − A |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in comparison.fields:
        agreement = "–" if f.agreement is None else f"{f.agreement:.3f}"
        delta = "–" if f.mean_delta is None else f"{f.mean_delta:+.4g}"
        lines.append(f"| `{f.field}` | {f.rows} | {f.changed} | {agreement} | {delta} |")
    total = comparison.changes.height
    lines += ["", f"Changed values: {total}" + (f" (first {limit} below)" if total > limit else ""), ""]
    if total:
        lines += ["| record | field | A | B |", "|---|---|---|---|"]
        for record, field, x, y in comparison.changes.head(limit).iter_rows():
            lines.append(f"| `{record}` | `{field}` | {_cell(x)} | {_cell(y)} |")
    return "\n".join(lines) + "\n"


def _statuses(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items()) or "none"


def _cell(text: str | None, width: int = 80) -> str:
    if text is None:
        return "null"
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
