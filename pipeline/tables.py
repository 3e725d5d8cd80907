"""JSON Schema → polars dtypes, and the enriched table of one shard (pure).

Objects become structs, arrays lists, enums and strings ``String``, integers ``Int64``, numbers
``Float64``, booleans ``Boolean``. A node polars cannot type faithfully (``anyOf`` of different
types, free-form objects) becomes a JSON ``String`` column rather than a lossy guess.
Extraction columns are decoded from the answers' JSON text in one vectorised call, which turns a
value its column cannot hold into null: the validator keeps such answers out (``integer`` nodes are
bounded to int64, pipeline.validate), and a value lost anyway is an error, never a null on an ``ok`` row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from pipeline.errors import TaskError
from pipeline.tasks import TaskSpec

_SCALARS: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
}

META_SCHEMA: dict[str, pl.DataType] = {
    "_record_id": pl.String(),
    "_task": pl.String(),
    "_status": pl.String(),
    "_error_code": pl.String(),
    "_error_message": pl.String(),
    "_attempts": pl.Int32(),
    "_reasks": pl.Int32(),
    "_prompt_tokens": pl.Int64(),
    "_completion_tokens": pl.Int64(),
    "_cost_cny": pl.Float64(),
    "_paid_prompt_tokens": pl.Int64(),
    "_paid_completion_tokens": pl.Int64(),
    "_paid_cost_cny": pl.Float64(),
    "_latency_ms": pl.Float64(),
    "_finish_reason": pl.String(),
    "_model": pl.String(),
    "_schema_id": pl.String(),
    "_prompt_version": pl.String(),
    "_request_id": pl.String(),
    "_key": pl.String(),
    "_from_journal": pl.Boolean(),
    "_packed": pl.Boolean(),
    "_run_id": pl.String(),
}


def dtype_for(node: Mapping[str, Any], defs: Mapping[str, Any]) -> pl.DataType:
    """The polars dtype of one schema node."""
    node = _resolve(node, defs)
    kind = _type_of(node)
    if kind == "object":
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return pl.String()  # free-form object: keep it as JSON text
        return pl.Struct({name: dtype_for(sub, defs) for name, sub in props.items()})
    if kind == "array":
        items = node.get("items")
        return pl.List(dtype_for(items, defs) if isinstance(items, dict) else pl.String())
    return _SCALARS.get(kind or "", pl.String())


def extraction_dtype(schema: Mapping[str, Any]) -> pl.Struct:
    """The struct of the whole answer; its fields become the extraction columns."""
    defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}
    props = schema.get("properties", {})
    return pl.Struct({name: dtype_for(sub, defs) for name, sub in props.items()})


def has_free_form(schema: Mapping[str, Any]) -> bool:
    """Whether some node becomes a JSON-text column (then answers need :func:`json_text_for`)."""
    defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}
    return any(_free_form(sub, defs) for sub in schema.get("properties", {}).values())


def _free_form(node: Mapping[str, Any], defs: Mapping[str, Any]) -> bool:
    node = _resolve(node, defs)
    kind = _type_of(node)
    if kind == "object":
        props = node.get("properties")
        return not isinstance(props, dict) or not props or any(_free_form(p, defs) for p in props.values())
    if kind == "array":
        items = node.get("items")
        return not isinstance(items, dict) or _free_form(items, defs)
    return kind not in _SCALARS


def json_text_for(value: Any, dtype: Any) -> Any:
    """Free-form nodes are String columns: hand them JSON text, not objects or arrays (``dtype``: a
    polars dtype or dtype class)."""
    if isinstance(dtype, pl.Struct) and isinstance(value, dict):
        return {f.name: json_text_for(value.get(f.name), f.dtype) for f in dtype.fields}
    if isinstance(dtype, pl.List) and isinstance(value, list):
        return [json_text_for(v, dtype.inner) for v in value]
    if dtype == pl.String and isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def check_no_clash(input_columns: Sequence[str], fields: Sequence[str], task_name: str, prefix: str = "") -> None:
    """Extraction columns (``prefix`` + field) and meta columns must not collide with input columns.
    The message names the option that resolves a collision, so no input is refused for a name."""
    taken = set(input_columns)
    clashes = [name for name in fields if prefix + name in taken]
    if clashes:
        name = clashes[0]
        suggestion = _free_prefix(taken, fields, prefix)
        raise TaskError(
            f"task {task_name!r}: output field {prefix + name!r} collides with input column {prefix + name!r}; "
            f"pass --output-prefix {suggestion} to name the extraction columns {suggestion}{name} …"
            + (f" (also colliding: {', '.join(clashes[1:])})" if len(clashes) > 1 else "")
        )
    meta = [c for c in input_columns if c in META_SCHEMA]
    if meta:
        enriched = " (the input looks like an enriched output: run on the original input)" if len(meta) > 3 else ""
        raise TaskError(f"input column {meta[0]!r} is one of the meta columns every output adds; rename or drop "
                        f"it first{enriched}")


def _free_prefix(taken: set[str], fields: Sequence[str], current: str) -> str:
    for candidate in ("x_", "ext_", "glm_", "out_"):
        prefix = current + candidate if current else candidate
        if not any(prefix + name in taken for name in fields):
            return prefix
    return "extracted_"


#: Characters that show nothing: a text made only of these (and whitespace) is blank, so the row is
#: skipped instead of paid for. Zero-width space/joiners, word joiner, BOM, soft hyphen, Mongolian
#: vowel separator.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_BLANK = rf"^[\s{INVISIBLE}]*$"


def _blank_to_null(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(_BLANK)).then(None).otherwise(text)


def prompt_rows(frame: pl.DataFrame, task: TaskSpec) -> list[dict[str, Any]]:
    """The values the prompt template reads, as dicts keyed by template name: each from its mapped
    input column, or the task's default for an optional column the input lacks."""
    present = set(frame.columns)
    exprs = []
    for name in dict.fromkeys([*task.template_columns, task.text_column]):
        source = task.source(name)
        if name == task.text_column and frame.schema.get(source) == pl.String:
            exprs.append(_blank_to_null(pl.col(source)).alias(name))
        elif source in present:
            exprs.append(pl.col(source).alias(name))
        else:  # only optional columns can be absent: the input check requires the text column
            exprs.append(pl.lit(task.default_for(name), dtype=pl.String).alias(name))
    return frame.select(exprs).to_dicts()


@dataclass(frozen=True)
class RowMeta:
    """Meta values of one output row, in the order of ``META_SCHEMA`` (run-wide ones excluded)."""

    status: str
    error_code: str | None
    error_message: str | None
    attempts: int
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    cost_cny: float
    latency_ms: float | None
    finish_reason: str | None
    model: str | None
    request_id: str | None
    key: str | None
    from_journal: bool
    data_json: str | None  # the valid answer as JSON text, only when status == ok
    paid_prompt_tokens: int = 0  # what the answer cost when it was paid, reused or not
    paid_completion_tokens: int = 0
    paid_cost_cny: float = 0.0
    packed: bool = False  # the answer is a record of a packed request's answer


@dataclass(frozen=True)
class RunColumns:
    """Values that are the same on every row of a run."""

    task: str
    schema_id: str
    prompt_version: str
    run_id: str
    output_prefix: str = ""  # before every extraction column (resolves a clash with an input column)


def assemble_shard(
    shard: pl.DataFrame,
    id_column: str,
    metas: Sequence[RowMeta],
    answer_dtype: pl.Struct,
    run: RunColumns,
) -> pl.DataFrame:
    """Input columns, then typed extraction columns, then meta columns; same rows, same order."""
    if shard.height != len(metas):
        raise ValueError(f"shard has {shard.height} rows but {len(metas)} outcomes")
    answers = pl.Series("_answer", [m.data_json for m in metas], dtype=pl.String)
    extracted = answers.str.json_decode(answer_dtype).struct.unnest()
    lost = lost_value(answers, extracted)
    if lost is not None:
        index, name, value = lost
        record = shard.get_column(id_column).cast(pl.String)[index]
        raise TaskError(f"task {run.task!r}, row {record!r}: the answer's {name!r} ({str(value)[:40]}) does not fit "
                        f"its column type {extracted.schema[name]}; it was judged by an older validator: run "
                        f"`glm-extract rejudge --task {run.task}` to judge the stored answers again")
    if run.output_prefix:
        extracted = extracted.rename({name: run.output_prefix + name for name in extracted.columns})
    meta = pl.DataFrame(
        {column: _meta_values(column, shard, id_column, metas, run) for column in META_SCHEMA},
        schema=META_SCHEMA,
    )
    return pl.concat([shard, extracted, meta], how="horizontal")


def lost_value(answers: pl.Series, extracted: pl.DataFrame) -> tuple[int, str, Any] | None:
    """The first (row index, field, answer value) whose non-null answer value decoded to a null
    top-level column value, or None. Only rows with such a null are parsed again."""
    answered = answers.is_not_null()
    parsed: dict[int, Any] = {}
    for name in extracted.columns:
        suspects = answered & extracted.get_column(name).is_null()
        if not suspects.any():
            continue
        for index in suspects.arg_true().to_list():
            if index not in parsed:
                parsed[index] = orjson.loads(answers[index])
            value = parsed[index].get(name)
            if value is not None:
                return index, name, value
    return None


#: Meta columns whose value is the run's, the same on every row (a :class:`RunColumns` field each).
RUN_WIDE = frozenset({"_task", "_schema_id", "_prompt_version", "_run_id"})


def _meta_values(column: str, shard: pl.DataFrame, id_column: str, metas: Sequence[RowMeta],
                 run: RunColumns) -> pl.Series | list[Any]:
    """One meta column's values: ``_record_id`` from the id column, a run-wide value, or the
    :class:`RowMeta` field of the same name (``_status`` → ``status``): the columns are defined
    once, in ``META_SCHEMA``, and a test keeps ``RowMeta`` and ``RunColumns`` in step with it."""
    if column == "_record_id":
        return shard.get_column(id_column).cast(pl.String)
    if column in RUN_WIDE:
        return [getattr(run, column[1:])] * shard.height
    field = column[1:]
    return [getattr(m, field) for m in metas]


def _type_of(node: Mapping[str, Any]) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    if isinstance(kind, str):
        return kind
    if "enum" in node or "const" in node:
        return "string" if all(isinstance(v, str) for v in node.get("enum", [node.get("const")])) else None
    if "properties" in node:
        return "object"
    return None


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, dict):
            return _resolve(target, defs)
    for combinator in ("anyOf", "oneOf"):
        options = node.get(combinator)
        if isinstance(options, list):
            typed = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
            if len(typed) == 1:
                return _resolve(typed[0], defs)
    return node
