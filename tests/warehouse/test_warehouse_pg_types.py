"""PostgreSQL column types the export cannot map name the column (review r1 F13); binary is bytea."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]
Query = Callable[[str], list[tuple[Any, ...]]]
pytestmark = pytest.mark.postgres


def _with(frame: Frame, tmp_path: Path, name: str, column: pa.Array) -> Path:
    table = frame().to_arrow().append_column(name, column)
    path = tmp_path / f"with_{name}.parquet"
    pq.write_table(table, path)
    return path


def test_an_unsupported_type_names_its_column(
    app: typer.Typer, frame: Frame, tmp_path: Path, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    source = _with(frame, tmp_path, "wait_time", pa.array([1, 2, 3, 4], pa.duration("s")))
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", pg_target])
    assert result.exit_code == 2
    assert "'wait_time'" in result.stderr and "duration" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert pg_query(f"SELECT to_regclass('{pg_schema}.ticket_qa') IS NULL") == [(True,)]


def test_binary_is_exported_as_bytea(
    app: typer.Typer, frame: Frame, tmp_path: Path, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    blobs = [b"\x00\x01", None, b"", b"\xff,\"\n"]
    source = _with(frame, tmp_path, "blob", pa.array(blobs, pa.binary()))
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", pg_target])
    assert result.exit_code == 0, result.output
    assert "NUL" not in result.stdout, "bytes are not text: nothing is removed from them"
    assert pg_query(
        f"SELECT data_type FROM information_schema.columns WHERE table_schema = '{pg_schema}' AND column_name = 'blob'"
    ) == [("bytea",)]
    stored = pg_query(f"SELECT blob FROM {pg_schema}.ticket_qa ORDER BY _record_id")
    assert [None if v is None else bytes(v) for (v,) in stored] == blobs
