"""Column names that differ only in case are refused, never renamed or merged behind the user's back.

DuckDB folds identifiers (``"summary"`` and ``"Summary"`` are one name there; reading both from
Parquet renames one to ``summary_1``), dlt destinations normalise names to lower case, and an
analyst's unquoted PostgreSQL query folds to lower case: an input column ``Summary`` beside the
extracted ``summary`` would be mislabelled in every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from pipeline.commands.export import register
from pipeline.warehouse import SchemaClash, SourceError, export_table

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]
Query = Callable[[str], list[tuple[Any, ...]]]


def _with_input_summary(frame: Frame) -> pl.DataFrame:
    """The enriched table of a task extracting ``summary`` from an input that has a ``Summary`` column."""
    return frame().with_columns(
        pl.lit("the input's own summary").alias("Summary"), pl.lit("extracted summary").alias("summary")
    )


def test_duckdb_export_refuses_columns_differing_only_in_case(
    frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    warehouse = tmp_path / "w.duckdb"
    result = CliRunner().invoke(
        app, ["export", "--output", str(make_table(_with_input_summary(frame))), "--to", str(warehouse)]
    )
    assert result.exit_code == 2, result.output
    assert "'Summary'" in result.stderr and "'summary'" in result.stderr and "case" in result.stderr
    assert result.stderr.count("\n") == 1
    if warehouse.exists():  # nothing half-written: no task table
        with duckdb.connect(str(warehouse), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM information_schema.tables").fetchone() == (0,)


@pytest.mark.postgres
def test_postgres_export_refuses_them_too(frame: Frame, make_table: MakeTable, pg_target: str, pg_query: Query) -> None:
    with pytest.raises(SourceError, match=r"'Summary'.*'summary'"):
        export_table(make_table(_with_input_summary(frame)), pg_target)


def test_a_new_column_differing_only_in_case_from_a_warehouse_column_is_a_clash(
    frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(frame().rename({"category": "Category"})), warehouse)
    with pytest.raises(SchemaClash, match=r"'category'.*'Category'"):
        export_table(make_table(frame()), warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE ticket_qa").fetchall()]
    assert "Category" in columns and "category" not in columns


@pytest.mark.postgres
def test_postgres_new_column_differing_only_in_case_is_a_clash(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    export_table(make_table(frame().rename({"category": "Category"})), pg_target)
    with pytest.raises(SchemaClash, match=r"'category'.*'Category'"):
        export_table(make_table(frame()), pg_target)
    columns = pg_query(
        f"SELECT column_name FROM information_schema.columns WHERE table_schema = '{pg_schema}' "
        "AND table_name = 'ticket_qa'"
    )
    assert ("Category",) in columns and ("category",) not in columns
