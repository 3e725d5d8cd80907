"""``glm-extract export`` through typer's CliRunner on an app that only has this command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

MakeTable = Callable[..., Path]


def test_export_prints_one_line_and_reads_the_summary(app: typer.Typer, make_table: MakeTable, tmp_path: Path) -> None:
    source = make_table(run_id="run-3", summary={"run_id": "run-3", "task": "ticket_qa", "endpoint": "emulator"})
    warehouse = tmp_path / "w.duckdb"
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", str(warehouse)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert "exported 4 rows to ticket_qa" in result.stdout and "4 new" in result.stdout
    again = CliRunner().invoke(app, ["export", "--output", str(source), "--to", str(warehouse)])
    assert "0 new" in again.stdout and "table now 4 rows" in again.stdout
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT run_id, endpoint, derived_from FROM runs").fetchall() == [
            ("run-3", "emulator", "summary")
        ]


def test_default_target_is_warehouse_duckdb_and_table_can_be_overridden(
    app: typer.Typer, make_table: MakeTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "--output", str(make_table()), "--table", "tickets"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "warehouse.duckdb").is_file() and "to tickets at" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "warehouse.csv"], "unknown target"),
        (["--to", "postgresql://u:hunter2@127.0.0.1:{port}/test"], "cannot reach PostgreSQL"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_2(
    app: typer.Typer, make_table: MakeTable, free_port: int, args: list[str], expected: str
) -> None:
    args = [a.format(port=free_port) for a in args]
    result = CliRunner().invoke(app, ["export", "--output", str(make_table()), *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert expected in result.stderr and result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr


def test_not_an_enriched_table(app: typer.Typer, tmp_path: Path) -> None:
    plain = tmp_path / "plain.parquet"
    pl.DataFrame({"id": [1]}).write_parquet(plain)
    result = CliRunner().invoke(app, ["export", "--output", str(plain), "--to", str(tmp_path / "w.duckdb")])
    assert result.exit_code == 2
    assert "not an enriched table: run `glm-extract run` first" in result.stderr
    assert result.stdout == ""


def test_brackets_in_paths_are_printed_as_they_are(app: typer.Typer, make_table: MakeTable, tmp_path: Path) -> None:
    """The terminal printer must not read ``[draft]`` in a file name as markup and drop it."""
    missing = tmp_path / "[draft]" / "missing.parquet"
    result = CliRunner().invoke(app, ["export", "--output", str(missing), "--to", str(tmp_path / "w.duckdb")])
    assert result.exit_code == 2 and "[draft]" in result.stderr
    warehouse = tmp_path / "[bold]" / "w.duckdb"
    done = CliRunner().invoke(app, ["export", "--output", str(make_table()), "--to", str(warehouse)])
    assert done.exit_code == 0 and "[bold]" in done.stdout
