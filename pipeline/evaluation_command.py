"""The IO edge of ``glm-extract evaluate``: read the tables, call the pure scorers, one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from pipeline.compare import CHANGES_SCHEMA, compare_outputs, render_comparison
from pipeline.errors import GlmExtractError, InputError, OutputError, first_line
from pipeline.evaluate import attach_gold, override_gold, parse_gold_table, parse_path, render_markdown, score_table
from pipeline.io import check_output_target, same_path, summary_path_for, write_parquet_atomic
from pipeline.tasks import TaskSpec


def evaluation_report(task: TaskSpec, output: Path, gold: Mapping[str, str], gold_file: Path | None) -> str:
    """Markdown scores of ``output`` against the task's ``[gold]`` (columns overridden by ``gold``),
    the gold columns read from ``gold_file`` when given."""
    table = read_table(output, "output")
    try:
        spec = override_gold(parse_gold_table(task.gold), {task.output_prefix + f: c for f, c in gold.items()})
        if gold_file is not None:
            columns = [parse_path(s.column)[0] for s in spec]
            table = attach_gold(table, read_table(gold_file, "gold file"), task.id_column, columns)
        return render_markdown(score_table(table, spec))
    except ValueError as exc:
        raise GlmExtractError(f"{gold_file or output}: {exc}") from None


def compare_report(task: TaskSpec, tables: tuple[Path, Path], changes: Path | None) -> str:
    """Markdown of the per-field changes from ``tables[0]`` to ``tables[1]``; every difference
    written to ``changes`` when given (checked before anything is read, replaced atomically)."""
    if changes is not None:
        check_changes_target(changes, tables)
    a, b = (read_table(path, "output") for path in tables)
    names = (str(tables[0]), str(tables[1]))
    try:
        comparison = compare_outputs(a, b, task.output_columns, names)
    except ValueError as exc:
        raise GlmExtractError(str(exc)) from None
    if changes is not None:
        write_changes(comparison.changes, changes)
    return render_comparison(comparison, names)


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
