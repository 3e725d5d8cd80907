"""Field-level scores of an enriched table against its gold columns (pure; docs/contracts.md §5).

A task's ``[gold]`` table maps an output field path to a gold column path and a metric::

    issue_category = { column = "gold_issue_category", metric = "exact" }
    "risk_flags.churn_risk" = { column = "gold_risk_flags.churn_risk", metric = "exact" }
    "entities[].value" = { column = "gold_entities[].value", metric = "set_f1" }

Paths: the first name is a column; ``.name`` reads a struct field; ``[]`` maps over a list, so
``entities[].value`` is the list of the ``value`` of every entity. Both sides are checked against
the table's dtypes before any row is read, so a typo fails at once with a ``ValueError``.

Only rows with ``_status == "ok"`` and a non-null gold value are scored. Metrics:

- ``exact``: equality; strings compared after NFKC, case folding and removing whitespace.
- ``number``: ``|answer - gold| <= 1 % of |gold|`` (an exact match when gold is 0).
- ``contains``: the normalised gold string occurs in the normalised answer.
- ``set_f1``: F1 of the two sets of normalised items (two empty sets score 1.0).

Field score: accuracy (mean of 0/1) or mean F1 over the scored rows. Macro: the plain mean of the
field scores that scored at least one row.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import polars as pl

Metric = Literal["exact", "number", "contains", "set_f1"]
METRICS: tuple[Metric, ...] = get_args(Metric)
STATUS_COLUMN = "_status"
NUMBER_REL_TOL = 0.01

_NAME = r"[^\W\d]\w*"
_PATH_RE = re.compile(rf"{_NAME}(?:\[\])*(?:\.{_NAME}(?:\[\])*)*")
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class GoldField:
    """One ``[gold]`` entry: score output ``field`` against gold ``column`` with ``metric``."""

    field: str
    column: str
    metric: Metric


@dataclass(frozen=True)
class FieldScore:
    """The score of one field; ``score`` is None when no row could be scored."""

    field: str
    column: str
    metric: Metric
    rows: int
    score: float | None


@dataclass(frozen=True)
class Evaluation:
    """Scores of one table: ``rows`` in the table, ``rows_ok`` with ``_status == ok``."""

    rows: int
    rows_ok: int
    fields: tuple[FieldScore, ...]
    macro: float | None


def load_gold_spec(task_toml: Mapping[str, Any]) -> tuple[GoldField, ...]:
    """The ``[gold]`` entries of a parsed ``task.toml`` (none when it has no ``[gold]`` table)."""
    return parse_gold_table(task_toml.get("gold", {}))


def parse_gold_table(table: Mapping[str, Any]) -> tuple[GoldField, ...]:
    """Check and convert the ``[gold]`` table itself; raise ``ValueError`` naming the bad entry."""
    if not isinstance(table, Mapping):
        raise ValueError("[gold] must be a table of field = { column = …, metric = … }")
    return tuple(_parse_gold_entry(field, entry) for field, entry in table.items())


def _parse_gold_entry(field: str, entry: Any) -> GoldField:
    if not isinstance(entry, Mapping):
        raise ValueError(f"[gold] {field!r}: expected {{ column = …, metric = … }}, got {entry!r}")
    column, metric = entry.get("column"), entry.get("metric", "exact")
    if not isinstance(column, str):
        raise ValueError(f"[gold] {field!r}: 'column' must be a string")
    if metric not in METRICS:
        raise ValueError(f"[gold] {field!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    for path in (field, column):
        parse_path(path)
    return GoldField(field=field, column=column, metric=cast(Metric, metric))


def parse_path(path: str) -> tuple[str, ...]:
    """Split ``entities[].value`` into ``("entities", "[]", "value")``; raise on bad syntax."""
    if not _PATH_RE.fullmatch(path):
        raise ValueError(f"bad field path {path!r}: use name, name.sub, name[] or name[].sub")
    return tuple(re.findall(rf"{_NAME}|\[\]", path))


def score_table(table: pl.DataFrame, gold: Sequence[GoldField]) -> Evaluation:
    """Score every gold field of an enriched table (contracts §3) against its gold column."""
    if STATUS_COLUMN not in table.columns:
        raise ValueError(f"the table has no {STATUS_COLUMN!r} column: is it an enriched table?")
    problems = gold_problems(table.schema, gold)
    if problems:
        raise ValueError(f"{len(problems)} problem(s) with the gold mapping: " + "; ".join(problems))
    ok = table.filter(pl.col(STATUS_COLUMN) == "ok")
    fields = tuple(_score_field(ok, spec) for spec in gold)
    scored = [f.score for f in fields if f.score is not None]
    macro = sum(scored) / len(scored) if scored else None
    return Evaluation(rows=table.height, rows_ok=ok.height, fields=fields, macro=macro)


def gold_problems(schema: Mapping[str, pl.DataType], gold: Sequence[GoldField]) -> list[str]:
    """Every reason ``gold`` cannot be scored on a table of ``schema``, all at once: unknown
    columns or paths, and dtypes the metric cannot compare (a list metric against a JSON-text
    column would otherwise score 0 without a word)."""
    problems: list[str] = []
    for spec in gold:
        kinds = []
        for path, role in ((spec.field, "output field"), (spec.column, "gold column")):
            try:
                kinds.append(value_kind(check_path(schema, path, role=role), path))
            except ValueError as exc:
                problems.append(str(exc))
        if len(kinds) == 2 and (reason := _metric_mismatch(spec, kinds[0], kinds[1])):
            problems.append(reason)
    return problems


def value_kind(dtype: pl.DataType, path: str) -> str:
    """What one row's value at ``path`` is: ``list`` (a list dtype or a path through ``[]``),
    ``struct``, ``number``, ``string``, ``boolean`` or ``other``."""
    if "[]" in path or isinstance(dtype, pl.List | pl.Array):
        return "list"
    if isinstance(dtype, pl.Struct):
        return "struct"
    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    return "boolean" if dtype == pl.Boolean else "other"


_METRIC_KINDS: Mapping[Metric, frozenset[str]] = {
    "exact": frozenset({"string", "number", "boolean", "list"}),
    "number": frozenset({"number", "string"}),
    "contains": frozenset({"string", "number"}),
    "set_f1": frozenset({"list"}),
}


def _metric_mismatch(spec: GoldField, answer: str, gold: str) -> str | None:
    allowed = _METRIC_KINDS[spec.metric]
    for side, path, kind in (("output field", spec.field, answer), ("gold column", spec.column, gold)):
        if kind not in allowed:
            json_text = spec.metric == "set_f1" and kind == "string"
            hint = " (JSON text? decode it into a list column first)" if json_text else ""
            return (f"{side} {path!r} holds {kind} values, which metric {spec.metric} cannot score "
                    f"(it compares {' or '.join(sorted(allowed))}){hint}")
    if spec.metric == "exact" and (answer == "list") != (gold == "list"):
        return (f"metric exact compares {spec.field!r} ({answer}) with {spec.column!r} ({gold}): "
                "both must be lists or neither")
    return None


def select_gold(gold: Sequence[GoldField], mapping: Mapping[str, str]) -> tuple[GoldField, ...]:
    """The fields to score: ``gold`` (the task's ``[gold]``) when ``mapping`` is empty, else only the
    fields of ``mapping`` (``--gold FIELD=COLUMN``), each with its ``[gold]`` metric (``exact`` for a
    field the task does not map)."""
    if not mapping:
        return tuple(gold)
    metrics = {spec.field: spec.metric for spec in gold}
    for path in (*mapping, *mapping.values()):
        parse_path(path)
    return tuple(GoldField(field=field, column=column, metric=metrics.get(field, "exact"))
                 for field, column in mapping.items())


def missing_gold_columns(columns: Iterable[str], gold: Sequence[GoldField]) -> list[str]:
    """The gold columns of ``gold`` that are not among ``columns`` (each once, in order)."""
    present = set(columns)
    return list(dict.fromkeys(c for c in (parse_path(g.column)[0] for g in gold) if c not in present))


@dataclass(frozen=True)
class GoldJoin:
    """``table`` with the gold columns joined; ``matched`` of its rows found their id in the gold file."""

    table: pl.DataFrame
    matched: int


def attach_gold(table: pl.DataFrame, gold: pl.DataFrame, id_column: str, columns: Iterable[str]) -> GoldJoin:
    """``table`` with the gold ``columns`` of ``gold`` joined on the id (``gold[id_column]`` as text
    against ``_record_id``); a table column of the same name is replaced. Rows without gold get nulls.
    A ``ValueError`` when no row of a non-empty table finds its id (the wrong file or id column),
    showing what the ids look like on both sides."""
    if id_column not in gold.columns:
        raise ValueError(f"the gold file has no id column {id_column!r} (columns: {', '.join(gold.columns)})")
    wanted = [c for c in dict.fromkeys(columns) if c in gold.columns and c != id_column]
    keyed = gold.select(pl.col(id_column).cast(pl.String).alias(RECORD_ID), *wanted)
    duplicated = keyed.filter(pl.col(RECORD_ID).is_duplicated())
    if duplicated.height:
        raise ValueError(f"the gold file has id {duplicated[RECORD_ID][0]!r} more than once")
    ids = table.get_column(RECORD_ID).cast(pl.String)
    matched = int(ids.is_in(keyed.get_column(RECORD_ID).drop_nulls().implode()).sum())
    if table.height and not matched:
        raise ValueError(f"0 of {table.height} rows have a gold id in the gold file: its {id_column} values look "
                         f"like {_sample(keyed.get_column(RECORD_ID))}, the table's {RECORD_ID} values like "
                         f"{_sample(ids)}; is it the gold file of this table, or are the ids in another column?")
    joined = table.drop([c for c in wanted if c in table.columns]).join(keyed, on=RECORD_ID, how="left")
    return GoldJoin(joined, matched)


def _sample(ids: pl.Series, count: int = 3) -> str:
    """The first ``count`` distinct ids, quoted, for a message."""
    distinct = ids.drop_nulls().unique(maintain_order=True)
    if not distinct.len():
        return "(none)"
    return ", ".join(repr(v) for v in distinct.head(count).to_list()) + (", …" if distinct.len() > count else "")


def output_prefixes(columns: Iterable[str], fields: Sequence[str], given: str = "") -> tuple[str, ...]:
    """The output prefix a table of ``columns`` was written with (``--output-prefix``): ``(given,)``
    when a ``given`` prefix + field is a column for at least half of ``fields``; else the prefixes
    under which the most fields are columns, when that is more than half of them (no prefix wins a
    tie: an input column named like a field beside ``x_`` fields does not hide them; two prefixes
    tied: ambiguous); else ``()``. A prefix is ``""`` or a name not starting with ``_`` (as ``run``
    accepts)."""
    present = set(columns)
    coverage = {given: sum(given + f in present for f in fields)}
    if given and 2 * coverage[given] >= len(fields):
        return (given,)
    for column in present:
        for field in fields:
            prefix = column[: len(column) - len(field)]
            if column.endswith(field) and prefix not in coverage and _is_prefix(prefix):
                coverage[prefix] = sum(prefix + f in present for f in fields)
    best = max(coverage.values())
    if coverage.get("") == best and 2 * best >= len(fields):
        return ("",)
    if 2 * best <= len(fields):
        return ()
    return tuple(sorted(p for p, n in coverage.items() if n == best))


def _is_prefix(prefix: str) -> bool:
    return prefix == "" or (re.fullmatch(_NAME, prefix) is not None and not prefix.startswith("_"))


RECORD_ID = "_record_id"


def check_path(schema: Mapping[str, pl.DataType], path: str, *, role: str) -> pl.DataType:
    """The dtype ``path`` reaches in ``schema``; a ``ValueError`` naming the path when it cannot."""
    steps = parse_path(path)
    if steps[0] not in schema:
        raise ValueError(f"unknown {role} {steps[0]!r} (in path {path!r}): not a column of the table")
    dtype = schema[steps[0]]
    for step in steps[1:]:
        dtype = _step_dtype(dtype, step, path, role)
    return dtype


def _step_dtype(dtype: pl.DataType, step: str, path: str, role: str) -> pl.DataType:
    if step == "[]":
        if not isinstance(dtype, pl.List | pl.Array):
            raise ValueError(f"{role} path {path!r}: '[]' applied to {dtype}, not a list")
        return cast(pl.DataType, dtype.inner)
    if not isinstance(dtype, pl.Struct):
        raise ValueError(f"{role} path {path!r}: '.{step}' applied to {dtype}, not a struct")
    for struct_field in dtype.fields:
        if struct_field.name == step:
            return cast(pl.DataType, struct_field.dtype)
    raise ValueError(f"{role} path {path!r}: struct has no field {step!r}")


def _score_field(ok: pl.DataFrame, spec: GoldField) -> FieldScore:
    answers = _resolve_column(ok, spec.field)
    golds = _resolve_column(ok, spec.column)
    metric = METRIC_FUNCTIONS[spec.metric]
    scores = [metric(answer, gold) for answer, gold in zip(answers, golds, strict=True) if gold is not None]
    mean = sum(scores) / len(scores) if scores else None
    return FieldScore(field=spec.field, column=spec.column, metric=spec.metric, rows=len(scores), score=mean)


def _resolve_column(frame: pl.DataFrame, path: str) -> list[Any]:
    steps = parse_path(path)
    return [resolve_value(value, steps[1:]) for value in frame.get_column(steps[0]).to_list()]


def resolve_value(value: Any, steps: Sequence[str]) -> Any:
    """Follow path steps through one row's Python value; null anywhere on the way gives None."""
    if not steps or value is None:
        return value
    head, rest = steps[0], steps[1:]
    if head == "[]":
        return [resolve_value(item, rest) for item in value]
    return resolve_value(value.get(head), rest)


def normalize_text(value: Any) -> str:
    """NFKC, case-folded, all whitespace removed: the comparison form of strings."""
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", str(value)).casefold())


def score_exact(answer: Any, gold: Any) -> float:
    """1.0 when equal (strings normalised, numbers by value), else 0.0."""
    if answer is None:
        return 0.0
    if isinstance(gold, str) or isinstance(answer, str):
        return float(normalize_text(answer) == normalize_text(gold))
    return float(answer == gold)


def score_number(answer: Any, gold: Any) -> float:
    """1.0 when ``answer`` is within 1 % of ``gold`` (relative to gold), else 0.0."""
    predicted, expected = _as_float(answer), _as_float(gold)
    if predicted is None or expected is None:
        return 0.0
    return float(abs(predicted - expected) <= NUMBER_REL_TOL * abs(expected))


def score_contains(answer: Any, gold: Any) -> float:
    """1.0 when the normalised gold text occurs in the normalised answer."""
    if answer is None:
        return 0.0
    return float(normalize_text(gold) in normalize_text(answer))


def score_set_f1(answer: Any, gold: Any) -> float:
    """F1 between the sets of normalised items; an unanswered list counts as empty."""
    predicted, expected = _as_set(answer), _as_set(gold)
    if not predicted and not expected:
        return 1.0
    hits = len(predicted & expected)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(expected)
    return 2 * precision * recall / (precision + recall)


METRIC_FUNCTIONS: Mapping[Metric, Callable[[Any, Any], float]] = {
    "exact": score_exact,
    "number": score_number,
    "contains": score_contains,
    "set_f1": score_set_f1,
}


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).replace(",", "").strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _as_set(value: Any) -> set[str]:
    return {normalize_text(item) for item in _flatten(value) if item is not None}


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield value


def render_markdown(evaluation: Evaluation, notes: Sequence[str] = ()) -> str:
    """A small Markdown table: one line per field, then the macro score; ``notes`` (one line each)
    under the headline."""
    lines = [
        f"Scored {evaluation.rows_ok} ok rows of {evaluation.rows}.",
        *notes,
        "",
        "| field | gold column | metric | rows | score |",
        "|---|---|---|---:|---:|",
    ]
    for f in evaluation.fields:
        lines.append(f"| `{f.field}` | `{f.column}` | {f.metric} | {f.rows} | {_format_score(f.score)} |")
    lines.append(f"| **macro** | | | | **{_format_score(evaluation.macro)}** |")
    return "\n".join(lines) + "\n"


def _format_score(score: float | None) -> str:
    return "–" if score is None else f"{score:.3f}"
