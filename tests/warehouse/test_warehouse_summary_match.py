"""A summary beside the table that belongs to another run (review r1 F11): the export warns on its one
line and derives the runs row from the table, so every ``_run_id`` of the table has its runs row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import typer
from typer.testing import CliRunner

MakeTable = Callable[..., Path]
OTHER_RUN = {"run_id": "20261126T010000Z-0badc0de", "task": "ticket_qa", "endpoint": "emulator",
             "status_counts": {"ok": 57, "skipped": 3}, "rows": 60, "model": "glm-4-plus"}


def test_a_summary_of_another_run_is_not_trusted(app: typer.Typer, make_table: MakeTable, tmp_path: Path) -> None:
    source = make_table(run_id="20261127T010000Z-0000aaaa", summary=OTHER_RUN)
    warehouse = tmp_path / "w.duckdb"
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", str(warehouse)])
    assert result.exit_code == 0, result.output
    line = result.stdout
    assert line.count("\n") == 1
    assert "warning" in line and "0badc0de" in line and "20261127T010000Z-0000aaaa" in line, line
    assert "runs 20261127T010000Z-0000aaaa;" in line
    with duckdb.connect(str(warehouse), read_only=True) as con:
        runs = con.execute("SELECT run_id, rows, ok, failed, model, derived_from FROM runs").fetchall()
    assert runs == [("20261127T010000Z-0000aaaa", 4, 3, 1, "glm-4-air-250414", "table")]


def test_a_matching_summary_is_still_used(app: typer.Typer, make_table: MakeTable, tmp_path: Path) -> None:
    source = make_table(run_id=OTHER_RUN["run_id"], summary=OTHER_RUN)
    warehouse = tmp_path / "w.duckdb"
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", str(warehouse)])
    assert result.exit_code == 0 and "warning" not in result.stdout, result.output
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT rows, derived_from FROM runs").fetchall() == [(60, "summary")]
