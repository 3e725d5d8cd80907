"""The IO edge of ``glm-extract evaluate``: read the tables, call the pure scorers, one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import polars as pl

from pipeline.compare import CHANGES_SCHEMA, compare_outputs, render_comparison
from pipeline.errors import GlmExtractError, InputError, OutputError, first_line
from pipeline.evaluate import (
    Evaluation,
    GoldField,
    attach_gold,
    missing_gold_columns,
    output_prefixes,
    parse_gold_table,
    parse_path,
    render_markdown,
    score_table,
    select_gold,
)
from pipeline.io import check_output_target, same_path, summary_path_for, write_parquet_atomic
from pipeline.tasks import TaskSpec


def evaluation_report(task: TaskSpec, output: Path, gold: Mapping[str, str], gold_file: Path | None) -> str:
    """Markdown scores of ``output`` against the task's ``[gold]``, or against only the fields of
    ``gold`` when given (``--gold``); the gold columns read from ``gold_file`` when given. The output
    prefix is read from the table's columns when they do not carry the task's."""
    table = read_table(output, "output")
    try:
        task, notes = table_prefix(task, table.columns, "The table's")
        task_gold = parse_gold_table(task.gold)
        spec = select_gold(task_gold, {task.output_prefix + f: c for f, c in gold.items()})
        notes += left_out_note(task_gold, spec)
        if gold_file is not None:
            joined = attach_gold(table, read_table(gold_file, "gold file"), task.id_column,
                                 [parse_path(s.column)[0] for s in spec])
            table = joined.table
            notes.append(f"{joined.matched} of {table.height} rows have a gold id in {gold_file}.")
        return render_markdown(scored(table, spec, hint=not gold), notes)
    except ValueError as exc:
        raise GlmExtractError(f"{gold_file or output}: {exc}") from None


def scored(table: pl.DataFrame, spec: tuple[GoldField, ...], *, hint: bool) -> Evaluation:
    """:func:`score_table`; with ``hint``, a refusal over gold columns the data lacks says how to
    score only the fields it has gold for (the task's ``[gold]`` is all or nothing without --gold)."""
    try:
        return score_table(table, spec)
    except ValueError as exc:
        if hint and missing_gold_columns(table.columns, spec):
            raise ValueError(f"{exc}; to score only the fields the data has gold for, name each: "
                             "--gold FIELD=COLUMN") from None
        raise


def left_out_note(task_gold: tuple[GoldField, ...], spec: tuple[GoldField, ...]) -> list[str]:
    """A note naming the task's ``[gold]`` fields that ``--gold`` left out (none when all are scored)."""
    named = {s.field for s in spec}
    left = [f"`{g.field}`" for g in task_gold if g.field not in named]
    return [f"Only the --gold fields are scored; not scored: {', '.join(left)} (the task's other [gold] fields)."
            ] if left else []


def table_prefix(task: TaskSpec, columns: list[str], whose: str) -> tuple[TaskSpec, list[str]]:
    """``task`` with the output prefix a table of ``columns`` was written with, and a note saying so
    when it is not the task's (``--output-prefix``); ``ValueError`` when two prefixes fit."""
    prefixes = output_prefixes(columns, task.output_fields, task.output_prefix)
    if len(prefixes) > 1:
        raise ValueError(f"{whose} columns hold the task's fields under the output prefixes "
                         f"{', '.join(repr(p) for p in prefixes)}: pass --output-prefix to say which")
    if not prefixes or prefixes[0] == task.output_prefix:
        return task, []
    found, given = prefixes[0], task.output_prefix
    carry = f"the output prefix `{found}`" if found else "no output prefix"
    source = f"not --output-prefix {given}" if given else "no --output-prefix given"
    rebound = replace(task, output_prefix=found, gold={found + k[len(given):]: v for k, v in task.gold.items()})
    return rebound, [f"{whose} fields carry {carry} (read from its columns; {source})."]


def compare_report(task: TaskSpec, tables: tuple[Path, Path], changes: Path | None) -> str:
    """Markdown of the per-field changes from ``tables[0]`` to ``tables[1]``; every difference
    written to ``changes`` when given (checked before anything is read, replaced atomically). Each
    table's output prefix is read from its columns when they do not carry the task's."""
    if changes is not None:
        check_changes_target(changes, tables)
    names = (str(tables[0]), str(tables[1]))
    try:
        (a, notes_a), (b, notes_b) = (aligned(task, read_table(path, "output"), path, side)
                                      for path, side in zip(tables, ("A's", "B's"), strict=True))
        comparison = compare_outputs(a, b, task.output_columns, names)
    except ValueError as exc:
        raise GlmExtractError(str(exc)) from None
    if changes is not None:
        write_changes(comparison.changes, changes)
    return render_comparison(replace(comparison, notes=(*notes_a, *notes_b, *comparison.notes)), names)


def aligned(task: TaskSpec, table: pl.DataFrame, path: Path, whose: str) -> tuple[pl.DataFrame, list[str]]:
    """``table`` (read from ``path``) with its extraction columns named as ``task`` names them
    (``task.output_columns``), when it was written with another output prefix, and the note saying so."""
    try:
        found, notes = table_prefix(task, table.columns, whose)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not notes:
        return table, []
    renames = {c: task.output_prefix + f for f, c in zip(task.output_fields, found.output_columns, strict=True)
               if c in table.columns}
    shadowed = [c for c in renames.values() if c in table.columns and c not in renames]  # an input column
    return table.drop(shadowed).rename(renames), notes


def check_changes_target(path: Path, tables: tuple[Path, Path]) -> None:
    """Refuse a --changes path that would replace something other than an earlier changes table:
    a compared table, an enriched output (its summary beside it), any other file; or that cannot be
    written (not .parquet, a folder, a missing folder)."""
    where = f"--changes {path}"
    try:
        check_output_target(path)
    except OutputError as exc:
        raise GlmExtractError(f"--changes: {exc}") from None
    for role, table in zip(("A", "B"), tables, strict=True):
        if same_path(path, table):
            raise GlmExtractError(f"{where} is table {role} being compared: it would be replaced; pick another path")
    if summary_path_for(path).exists():
        raise GlmExtractError(f"{where} is an enriched output ({summary_path_for(path).name} beside it): "
                              "it would be replaced; pick another path")
    if path.exists() and not _is_changes_table(path):
        raise GlmExtractError(f"{where} exists and is not a changes table of evaluate --compare: it would be "
                              "replaced; pick another path or delete it")


def _is_changes_table(path: Path) -> bool:
    try:
        columns = list(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError):
        return False
    return columns in (list(CHANGES_SCHEMA), [c for c in CHANGES_SCHEMA if c != "kind"])


def write_changes(frame: pl.DataFrame, path: Path) -> None:
    """Write the changes table atomically (:func:`pipeline.io.write_parquet_atomic`), in one line on failure."""
    try:
        write_parquet_atomic(frame, path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise GlmExtractError(f"--changes {path}: cannot write it ({first_line(exc)})") from None


def read_table(path: Path, role: str) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"{role} not found: {path}")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
