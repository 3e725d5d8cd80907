"""The long tail through dlt, exercised with dlt's own DuckDB destination in a temp file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from pipeline.warehouse import export_table

MakeTable = Callable[..., Path]


def test_dlt_merge_is_idempotent_and_writes_runs(
    make_table: MakeTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "dlt.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(warehouse))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.chdir(tmp_path)
    source = make_table()
    first = export_table(source, "dlt:duckdb?dataset=analytics")
    second = export_table(source, "dlt:duckdb?dataset=analytics")
    assert (first.inserted, first.table_rows) == (4, 4)
    assert (second.inserted, second.table_rows) == (0, 4)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM analytics.ticket_qa").fetchall() == [(4,)]
        assert con.execute("SELECT run_id FROM analytics.runs").fetchall() == [("run-1",)]
        kinds = con.execute("SELECT entities->0->>'type' FROM analytics.ticket_qa LIMIT 1").fetchall()
    assert kinds == [("person",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dlt.duckdb", source.name])
