"""NUL characters and PostgreSQL: removed by a documented rule, the rows named, the export succeeds.

PostgreSQL ``text`` cannot hold U+0000 and ``jsonb`` refuses ``\\u0000``; one such character in one
document used to fail the whole export without naming a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from pipeline.commands.export import register
from pipeline.warehouse import export_table
from pipeline.warehouse.pg_copy import batch_to_csv

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]
Query = Callable[[str], list[tuple[Any, ...]]]


def _with_nul(frame: Frame) -> pl.DataFrame:
    """t-1 has a NUL in its text, t-2 inside a nested value, t-3 a backslash-u0000 that is not a NUL."""
    base = frame()
    text = ["clean", "bad\x00text", "fine", "literal \\u0000 stays"]
    entities = [[{"type": "person", "name": "n\x00ame" if i == 2 else f"p{i}"}] for i in range(4)]
    return base.with_columns(pl.Series("text", text), pl.Series("entities", entities))


@pytest.mark.postgres
def test_nul_is_removed_and_the_rows_are_named(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["export", "--output", str(make_table(_with_nul(frame))), "--to", pg_target])
    assert result.exit_code == 0, result.output
    line = result.stdout
    assert line.count("\n") == 1 and "exported 4 rows" in line
    assert "NUL" in line and "2 rows" in line and "t-1" in line and "t-2" in line
    assert "t-3" not in line and "t-0" not in line
    assert "text" in line and "entities" in line
    rows = dict(pg_query(f"SELECT _record_id, text FROM {pg_schema}.ticket_qa"))
    assert rows["t-1"] == "badtext" and rows["t-3"] == "literal \\u0000 stays" and rows["t-0"] == "clean"
    assert pg_query(f"SELECT entities->0->>'name' FROM {pg_schema}.ticket_qa WHERE _record_id = 't-2'") == [("name",)]


@pytest.mark.postgres
def test_export_result_carries_the_nul_rows(frame: Frame, make_table: MakeTable, pg_target: str) -> None:
    result = export_table(make_table(_with_nul(frame)), pg_target)
    assert result.nul_rows == 2 and result.nul_examples == ("t-1", "t-2")
    assert set(result.nul_columns) == {"text", "entities"}
    clean = export_table(make_table(frame()), pg_target)
    assert clean.nul_rows == 0 and "NUL" not in clean.describe()


def test_batch_to_csv_reports_nul_rows_and_columns_without_touching_other_text() -> None:
    batch = pa.record_batch(
        {
            "s": pa.array(["a\x00b", "plain", None, "back\\u0000slash"], pa.large_string()),
            "d": pa.array(["x", "y\x00", "x", "x"]).dictionary_encode(),
            "l": pa.array([["ok"], ["no\x00pe"], None, ["\\u0000"]]),
        }
    )
    chunk = batch_to_csv(batch)
    assert chunk.nul_rows == (0, 1) and chunk.nul_columns == ("s", "d", "l")
    text = chunk.data.decode()
    assert "\x00" not in text and "\\u0000" not in text.splitlines()[1]
    assert text.splitlines()[0].startswith('"ab"') and "back\\u0000slash" in text


def _ids(frame: Frame, ids: list[str]) -> pl.DataFrame:
    return frame(rows=len(ids)).with_columns(pl.Series("_record_id", ids), pl.Series("ticket_id", ids))


@pytest.mark.postgres
@pytest.mark.parametrize("ids", [["n\x003"], ["n\x003", "n3"]], ids=["alone", "beside-its-twin"])
def test_a_nul_in_a_record_id_is_refused_naming_the_row(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query, ids: list[str]
) -> None:
    """Removing the NUL would make ``n\\x003`` the record ``n3``: another document's identity."""
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["export", "--output", str(make_table(_ids(frame, ids))), "--to", pg_target])
    assert result.exit_code == 2, result.output
    assert "'n\\x003'" in result.stderr and "NUL" in result.stderr and "_record_id" in result.stderr, result.stderr
    assert "nothing was written" in result.stderr and result.stderr.count("\n") == 1
    assert pg_query(f"SELECT to_regclass('{pg_schema}.ticket_qa') IS NULL") == [(True,)]
    later = CliRunner().invoke(app, ["export", "--output", str(make_table(_ids(frame, ["n3"]))), "--to", pg_target])
    assert later.exit_code == 0 and "1 new" in later.stdout, later.output
