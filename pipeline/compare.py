"""Two enriched tables of the same input side by side (pure): which rows each holds, how their
statuses moved, and per field how many answers changed (``glm-extract evaluate --compare A B``).

Rows are matched on ``_record_id`` (as text; an id twice in one table is refused). Fields are
compared only over the rows ``ok`` in both tables: a row answered on neither side is no evidence
of agreement, and a row answered on one side only is a status change, counted apart (ok → invalid,
skipped → ok, …). A value counts as changed when its canonical JSON differs (a struct or a list
changes when any part of it does). A list whose items are the same but in another order (also in a
nested list) counts as *reordered*, not changed: no gold metric of a list (``set_f1``) reads order.
For numeric fields the mean of ``B - A`` over the rows ok in both is reported as well.

Two tables of different tasks *and* different schemas are refused; a different task name with the
same schema (a copy of the task, e.g. with packing on) or the same task with a changed schema is
compared and said so, as is another model (``_model``) or prompt version (``_prompt_version``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
import polars as pl

from pipeline.wording import plural

RECORD_ID = "_record_id"
STATUS = "_status"
ERROR_CODE = "_error_code"
TASK = "_task"
SCHEMA_ID = "_schema_id"
MODEL = "_model"
PROMPT_VERSION = "_prompt_version"
OK = "ok"
Kind = Literal["value", "order", "status", "only_a", "only_b"]
CHANGES_SCHEMA = {RECORD_ID: pl.String, "field": pl.String, "kind": pl.String, "a": pl.String, "b": pl.String}
SAMPLE_IDS = 5
_B = "__b"


@dataclass(frozen=True)
class FieldDelta:
    """One field over the rows ok in both tables; ``reordered`` is None for a field holding no list."""

    field: str
    rows: int
    changed: int
    reordered: int | None
    mean_delta: float | None  # mean of B - A (numeric fields), else None

    @property
    def agreement(self) -> float | None:
        return None if self.rows == 0 else 1 - self.changed / self.rows


@dataclass(frozen=True)
class OneSide:
    """Rows of one table whose id the other lacks: how many, and the first few ids."""

    count: int
    sample: tuple[str, ...]


@dataclass(frozen=True)
class StatusChange:
    """Rows in both tables whose status went from ``a`` to ``b``."""

    a: str
    b: str
    count: int
    sample: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """``changes``: one row per difference (``kind``: value, order, status, only_a, only_b), values as
    JSON text; a status or a one-sided row is reported under the field ``_status``."""

    rows_a: int
    rows_b: int
    common: int
    both_ok: int
    only_a: OneSide
    only_b: OneSide
    status_a: dict[str, int]
    status_b: dict[str, int]
    status_changes: tuple[StatusChange, ...]
    notes: tuple[str, ...]
    fields: tuple[FieldDelta, ...]
    changes: pl.DataFrame


Change = tuple[str, str, Kind, str | None, str | None]


def compare_outputs(a: pl.DataFrame, b: pl.DataFrame, fields: Sequence[str],
                    names: tuple[str, str] = ("A", "B")) -> Comparison:
    """Compare ``fields`` of two enriched tables; raise ``ValueError`` naming the table (by ``names``)
    and what is wrong: a missing column, a repeated or missing id, outputs of another task."""
    a, b = (_checked(table, name, fields) for table, name in zip((a, b), names, strict=True))
    notes = _identity_notes(a, b, names) + _one_sided_fields(a, b, fields)
    fields = [f for f in fields if f in a.columns and f in b.columns]
    meta = [RECORD_ID, STATUS, *([ERROR_CODE] if ERROR_CODE in a.columns and ERROR_CODE in b.columns else [])]
    joined = a.select(*meta, *fields).join(b.select(*meta, *fields), on=RECORD_ID, how="inner", suffix=_B,
                                           maintain_order="left")
    both_ok = joined.filter((pl.col(STATUS) == OK) & (pl.col(STATUS + _B) == OK))
    changes: list[Change] = []
    only_a, only_b = _one_side(a, b, "only_a", changes), _one_side(b, a, "only_b", changes)
    status_changes = _status_changes(joined, changes)
    deltas = tuple(_field_delta(both_ok, field, changes) for field in fields)
    return Comparison(
        rows_a=a.height, rows_b=b.height, common=joined.height, both_ok=both_ok.height,
        only_a=only_a, only_b=only_b, status_a=_status_counts(a), status_b=_status_counts(b),
        status_changes=status_changes, notes=notes, fields=deltas,
        changes=pl.DataFrame(changes, schema=CHANGES_SCHEMA, orient="row"),
    )


def _checked(table: pl.DataFrame, name: str, fields: Sequence[str]) -> pl.DataFrame:
    """``table`` with its ids as text, after checking it has the columns and one row per id."""
    missing = [c for c in (RECORD_ID, STATUS) if c not in table.columns]
    if missing or not any(f in table.columns for f in fields):
        lacking = ", ".join(missing) or "every field of the task"
        raise ValueError(f"{name} lacks {lacking}: is it an enriched table of this task?")
    table = table.with_columns(pl.col(RECORD_ID).cast(pl.String), pl.col(STATUS).cast(pl.String))
    ids = table.get_column(RECORD_ID)
    if ids.null_count():
        raise ValueError(f"{name} has {plural(ids.null_count(), 'row')} without a {RECORD_ID}")
    repeated = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
    if repeated.len():
        more = f" (and {plural(repeated.len() - 1, 'other id')} repeated)" if repeated.len() > 1 else ""
        raise ValueError(f"{name} has {RECORD_ID} {repeated[0]!r} more than once{more}: rows cannot be "
                         "matched; compare outputs with one row per id")
    return table


def _identity_notes(a: pl.DataFrame, b: pl.DataFrame, names: tuple[str, str]) -> tuple[str, ...]:
    """What differs in task, schema, model or prompt version between the tables (one note each);
    refuse when both task and schema do."""
    tasks, schemas = (_distinct(a, b, column) for column in (TASK, SCHEMA_ID))
    if tasks and schemas:
        raise ValueError(f"{names[0]} is task {tasks[0]} (schema {schemas[0]}), {names[1]} is task {tasks[1]} "
                         f"(schema {schemas[1]}): outputs of different tasks; compare two outputs of one task")
    notes = []
    if tasks:
        known = SCHEMA_ID in a.columns and SCHEMA_ID in b.columns
        notes.append(f"A is task `{tasks[0]}`, B is task `{tasks[1]}` "
                     f"({'same schema' if known else f'schema not recorded: no {SCHEMA_ID} column'}).")
    if schemas:
        notes.append(f"A has schema `{schemas[0]}`, B has schema `{schemas[1]}`: the task's schema changed "
                     "between the runs.")
    if models := _distinct(a, b, MODEL):
        notes.append(f"A was answered by model `{models[0]}`, B by model `{models[1]}`.")
    if versions := _distinct(a, b, PROMPT_VERSION):
        notes.append(f"A has prompt version `{versions[0]}`, B has prompt version `{versions[1]}`: the task's "
                     "prompt changed between the runs.")
    return tuple(notes)


def _one_sided_fields(a: pl.DataFrame, b: pl.DataFrame, fields: Sequence[str]) -> tuple[str, ...]:
    """A note for each field of the task that only one table holds (a schema edit added or removed
    it between the runs); such a field is not compared."""
    notes = []
    for field in fields:
        if (field in a.columns) != (field in b.columns):
            side, other = ("A", "B") if field in a.columns else ("B", "A")
            notes.append(f"`{field}` is only in {side} (not in {other}'s schema): not compared.")
    return tuple(notes)


def _distinct(a: pl.DataFrame, b: pl.DataFrame, column: str) -> tuple[str, str] | None:
    """The values of ``column`` in each table as text, when both have it and they differ."""
    if column not in a.columns or column not in b.columns:
        return None
    values = [sorted(str(v) for v in t.get_column(column).drop_nulls().unique().to_list()) for t in (a, b)]
    return None if values[0] == values[1] else (", ".join(values[0]) or "none", ", ".join(values[1]) or "none")


def _one_side(table: pl.DataFrame, other: pl.DataFrame, kind: Kind, changes: list[Change]) -> OneSide:
    rows = table.join(other.select(RECORD_ID), on=RECORD_ID, how="anti", maintain_order="left")
    for record, status in rows.select(RECORD_ID, STATUS).iter_rows():
        text = _canonical(status)
        changes.append((record, STATUS, kind, text, None) if kind == "only_a" else (record, STATUS, kind, None, text))
    return OneSide(rows.height, tuple(rows.get_column(RECORD_ID).head(SAMPLE_IDS).to_list()))


def _status_changes(joined: pl.DataFrame, changes: list[Change]) -> tuple[StatusChange, ...]:
    moved = joined.filter(pl.col(STATUS).ne_missing(pl.col(STATUS + _B)))
    for side in ("", _B):  # a row not ok says why: "invalid (budget_reached)" is not "invalid (schema_invalid)"
        code = pl.col(ERROR_CODE + side) if ERROR_CODE in joined.columns else pl.lit(None, pl.String)
        labelled = pl.when((pl.col(STATUS + side) != OK) & code.is_not_null()).then(
            pl.format("{} ({})", pl.col(STATUS + side), code)).otherwise(pl.col(STATUS + side))
        moved = moved.with_columns(labelled.alias("__label" + side))
    by_pair: dict[tuple[str, str], list[str]] = {}
    for record, x, y in moved.select(RECORD_ID, "__label", "__label" + _B).iter_rows():
        by_pair.setdefault((str(x), str(y)), []).append(record)
        changes.append((record, STATUS, "status", _canonical(x), _canonical(y)))
    ordered = sorted(by_pair.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple(StatusChange(x, y, len(ids), tuple(ids[:SAMPLE_IDS])) for (x, y), ids in ordered)


def _field_delta(both_ok: pl.DataFrame, field: str, changes: list[Change]) -> FieldDelta:
    counts: Counter[Kind] = Counter()
    left, right = both_ok.get_column(field).to_list(), both_ok.get_column(field + _B).to_list()
    for record, x, y in zip(both_ok.get_column(RECORD_ID).to_list(), left, right, strict=True):
        tx, ty = _canonical(x), _canonical(y)
        if tx != ty:
            kind: Kind = "order" if _canonical(_unordered(x)) == _canonical(_unordered(y)) else "value"
            counts[kind] += 1
            changes.append((record, field, kind, tx, ty))
    has_list = _holds_list(both_ok.schema[field]) or _holds_list(both_ok.schema[field + _B])
    return FieldDelta(field, both_ok.height, counts["value"], counts["order"] if has_list else None,
                      _mean_delta(both_ok, field))


def _canonical(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _unordered(value: Any) -> Any:
    """``value`` with every list (at any depth) sorted by its items' canonical JSON."""
    if isinstance(value, list):
        return sorted((_unordered(item) for item in value), key=lambda item: _canonical(item) or "")
    if isinstance(value, dict):
        return {key: _unordered(item) for key, item in value.items()}
    return value


def _holds_list(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.List | pl.Array):
        return True
    return isinstance(dtype, pl.Struct) and any(_holds_list(cast(pl.DataType, f.dtype)) for f in dtype.fields)


def _mean_delta(both_ok: pl.DataFrame, field: str) -> float | None:
    if not (both_ok.schema[field].is_numeric() and both_ok.schema[field + _B].is_numeric()):
        return None
    value = both_ok.select((pl.col(field + _B) - pl.col(field)).mean()).item()
    return None if value is None else float(value)


def _status_counts(table: pl.DataFrame) -> dict[str, int]:
    counts = table.get_column(STATUS).value_counts()
    return {str(status): int(n) for status, n in counts.sort(STATUS).iter_rows()}


def render_comparison(comparison: Comparison, names: tuple[str, str], limit: int = 20) -> str:
    """Markdown: rows matched and one-sided, statuses and their changes, one line per field, then the
    first ``limit`` changed values."""
    return "\n".join([*_rows_part(comparison, names), *_status_part(comparison), *_fields_part(comparison),
                      *_values_part(comparison, limit)]) + "\n"


def _rows_part(c: Comparison, names: tuple[str, str]) -> list[str]:
    a, b = names
    return [
        f"Compared `{a}` (A, {plural(c.rows_a, 'row')}) with `{b}` (B, {plural(c.rows_b, 'row')}): "
        f"{plural(c.common, 'row')} in both, {c.both_ok} ok in both.",
        *c.notes,
        "",
        f"Only in A: {_one_side_text(c.only_a)}",
        f"Only in B: {_one_side_text(c.only_b)}",
        "",
    ]


def _one_side_text(side: OneSide) -> str:
    if not side.count:
        return "0 rows"
    return f"{plural(side.count, 'row')} ({_ids(side.sample, side.count)})"


def _ids(sample: tuple[str, ...], count: int) -> str:
    return ", ".join(f"`{record}`" for record in sample) + (", …" if count > len(sample) else "")


def _status_part(c: Comparison) -> list[str]:
    lines = [f"Statuses: A {_statuses(c.status_a)} · B {_statuses(c.status_b)}", ""]
    if not c.status_changes:
        return [*lines, "Status changes (rows in both): none.", ""]
    lines += ["Status changes (rows in both; their fields are not compared below):", "",
              "| A → B | rows | records |", "|---|---:|---|"]
    lines += [f"| {s.a} → {s.b} | {s.count} | {_ids(s.sample, s.count)} |" for s in c.status_changes]
    return [*lines, ""]


def _fields_part(c: Comparison) -> list[str]:
    lines = [f"Fields over the {plural(c.both_ok, 'row')} ok in both (a list whose items only changed order is "
             "reordered, not changed):", "",
             "| field | rows | changed | reordered | agreement | mean B − A |", "|---|---:|---:|---:|---:|---:|"]
    for f in c.fields:
        agreement = "–" if f.agreement is None else f"{f.agreement:.3f}"
        reordered = "–" if f.reordered is None else str(f.reordered)
        delta = "–" if f.mean_delta is None else f"{f.mean_delta:+.4g}"
        lines.append(f"| `{f.field}` | {f.rows} | {f.changed} | {reordered} | {agreement} | {delta} |")
    return lines


def _values_part(c: Comparison, limit: int) -> list[str]:
    values = c.changes.filter(pl.col("kind") == "value")
    total = values.height
    lines = ["", f"Changed values: {total}" + (f" (first {limit} below)" if total > limit else "")]
    if total:
        lines += ["", "| record | field | A | B |", "|---|---|---|---|"]
        for record, field, _, x, y in values.head(limit).iter_rows():
            lines.append(f"| `{record}` | `{field}` | {_cell(x)} | {_cell(y)} |")
    return lines


def _statuses(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items()) or "none"


def _cell(text: str | None, width: int = 80) -> str:
    if text is None:
        return "null"
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
