"""The IO edge of ``glm-extract evaluate``: read the tables, call the pure scorers, one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from pipeline.compare import compare_outputs, render_comparison
from pipeline.errors import GlmExtractError, InputError, first_line
from pipeline.evaluate import attach_gold, override_gold, parse_gold_table, parse_path, render_markdown, score_table
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
    """Markdown of the per-field changes from ``tables[0]`` to ``tables[1]``; every changed value
    written to ``changes`` when given."""
    if changes is not None and changes.suffix != ".parquet":
        raise GlmExtractError(f"--changes {changes}: must end in .parquet")
    a, b = (read_table(path, "output") for path in tables)
    try:
        comparison = compare_outputs(a, b, task.output_columns)
    except ValueError as exc:
        raise GlmExtractError(f"{tables[0]} vs {tables[1]}: {exc}") from None
    if changes is not None:
        comparison.changes.write_parquet(changes)
    return render_comparison(comparison, (str(tables[0]), str(tables[1])))


def read_table(path: Path, role: str) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"{role} not found: {path}")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
