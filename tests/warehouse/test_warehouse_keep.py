"""A later export does not wipe good answers (review r1 F2): two real runs against the offline emulator,
exported with ``glm-extract export`` in either order, into DuckDB and PostgreSQL.

The first run answers 58 of the 60 sample tickets; the second, on a dearer model with a tiny budget,
answers 3 and skips 55 as ``budget_reached``. A stored ``ok`` row is never replaced by a row that is
not ``ok``, and a row from an older run never replaces a row of the same kind from a newer one, so
the warehouse ends in the same state whichever output is exported first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pipeline.warehouse import export_table
from tests.conftest import REPO, SAMPLE, SCHEMAS

TICKETS = SAMPLE / "tickets.parquet"
Query = Callable[[str], list[tuple[Any, ...]]]
ROWS = "SELECT _record_id, _status, _error_code, _run_id, issue_category FROM {table} ORDER BY _record_id"


@dataclass(frozen=True)
class TwoRuns:
    full: Path  # the older run: 58 ok, 2 skipped (empty text)
    budget: Path  # the newer run: 3 ok, 55 budget_reached, 2 empty text
    full_run: str
    budget_run: str


def _run(output: Path, journal: Path, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY"}}
    env |= {"GLM_EXTRACT_SCHEMAS_DIR": str(SCHEMAS), "GLM_EXTRACT_EMULATOR_PROFILE": "clean"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--task", "ticket_qa", "--input", str(TICKETS),
         "--output", str(output), "--journal", str(journal), "--emulator-latency", "fixed:0.001", "-q", *extra],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr


def _run_id(output: Path) -> str:
    return str(duckdb.sql(f"SELECT DISTINCT _run_id FROM read_parquet('{output}')").fetchall()[0][0])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    folder = tmp_path_factory.mktemp("two_runs")
    journal = folder / "journal.sqlite"
    full, budget = folder / "full.parquet", folder / "budget.parquet"
    _run(full, journal)
    _run(budget, journal, "--model", "glm-4-plus", "--budget-cny", "0.003")
    runs = TwoRuns(full, budget, _run_id(full), _run_id(budget))
    assert runs.full_run < runs.budget_run, "run ids begin with their start time"
    statuses = duckdb.sql(f"SELECT _status, count(*) FROM read_parquet('{budget}') GROUP BY ALL").fetchall()
    assert dict(statuses)["skipped"] > 50, statuses
    return runs


def _export(app: typer.Typer, source: Path, to: str, *extra: str) -> str:
    result = CliRunner().invoke(app, ["export", "--output", str(source), "--to", to, *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    return result.stdout


def _ok_answers(rows: list[tuple[Any, ...]]) -> int:
    return sum(1 for r in rows if r[1] == "ok" and r[4] is not None)


def _duckdb_rows(path: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(ROWS.format(table="ticket_qa")).fetchall()


def test_budget_skipped_rows_do_not_wipe_ok_answers_duckdb(app: typer.Typer, two_runs: TwoRuns, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _export(app, two_runs.full, str(warehouse))
    assert _ok_answers(_duckdb_rows(warehouse)) == 58
    line = _export(app, two_runs.budget, str(warehouse))
    rows = _duckdb_rows(warehouse)
    assert _ok_answers(rows) == 58, "the budget run's skipped rows replaced stored answers"
    assert not [r for r in rows if r[2] == "budget_reached"]
    assert "55 kept" in line and "stored ok answer" in line, line
    assert sum(1 for r in rows if r[3] == two_runs.budget_run) == 5, "its 3 answers and 2 empty texts are newer"


def test_an_older_run_exported_last_does_not_roll_the_table_back_duckdb(
    app: typer.Typer, two_runs: TwoRuns, tmp_path: Path
) -> None:
    newer_first, older_first = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    _export(app, two_runs.budget, str(newer_first))
    line = _export(app, two_runs.full, str(newer_first))
    assert "5 kept" in line and "newer run" in line, line
    _export(app, two_runs.full, str(older_first))
    _export(app, two_runs.budget, str(older_first))
    rows = _duckdb_rows(newer_first)
    assert rows == _duckdb_rows(older_first), "the warehouse depends on the order of the exports"
    assert _ok_answers(rows) == 58
    answered_by_budget = [r for r in rows if r[3] == two_runs.budget_run and r[1] == "ok"]
    assert len(answered_by_budget) == 3, "the newer run's answers were rolled back to the older run's"


def test_re_export_stays_idempotent_and_replace_forces_the_overwrite(two_runs: TwoRuns, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(two_runs.full, warehouse)
    export_table(two_runs.budget, warehouse)
    again = export_table(two_runs.budget, warehouse)
    assert (again.inserted, again.updated, again.unchanged, again.kept_ok, again.kept_newer) == (0, 0, 5, 55, 0)
    assert again.table_rows == 60
    forced = export_table(two_runs.budget, warehouse, replace=True)
    assert (forced.updated, forced.kept_ok, forced.unchanged) == (55, 0, 5)
    assert _ok_answers(_duckdb_rows(warehouse)) == 3
    assert "kept" not in forced.describe()


@pytest.mark.postgres
def test_budget_skipped_and_older_rows_are_kept_postgres(
    app: typer.Typer, two_runs: TwoRuns, pg_target: str, pg_url: str, pg_schema: str, pg_query: Query
) -> None:
    _export(app, two_runs.full, pg_target)
    line = _export(app, two_runs.budget, pg_target)
    assert "55 kept" in line and "stored ok answer" in line, line
    rows = pg_query(ROWS.format(table=f"{pg_schema}.ticket_qa"))
    assert _ok_answers(rows) == 58 and not [r for r in rows if r[2] == "budget_reached"]
    other = f"{pg_schema}_b"
    try:
        _export(app, two_runs.budget, f"{pg_url}?schema={other}")
        older = _export(app, two_runs.full, f"{pg_url}?schema={other}")
        assert "5 kept" in older and "newer run" in older, older
        assert pg_query(ROWS.format(table=f"{other}.ticket_qa")) == rows
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE'.encode())
    again = export_table(two_runs.budget, pg_target)
    assert (again.updated, again.unchanged, again.kept_ok) == (0, 5, 55)
    forced = export_table(two_runs.budget, pg_target, replace=True)
    assert (forced.updated, forced.kept_ok) == (55, 0)


def test_run_ids_without_a_time_are_ordered_by_the_runs_started_at(
    make_table: Callable[..., Path], tmp_path: Path
) -> None:
    """Run ids not made by ``new_run_id`` are ordered by their summaries' ``started_at`` in ``runs``."""
    warehouse = tmp_path / "w.duckdb"
    newer = make_table(run_id="nightly-b", summary={"run_id": "nightly-b", "started_at": "2026-11-27T01:00:00+00:00"})
    older = make_table(run_id="nightly-a", summary={"run_id": "nightly-a", "started_at": "2026-11-26T01:00:00+00:00"})
    export_table(newer, warehouse)
    late = export_table(older, warehouse)
    assert (late.updated, late.kept_newer) == (0, 4)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT DISTINCT _run_id FROM ticket_qa").fetchall() == [("nightly-b",)]
    unordered = export_table(make_table(run_id="nightly-c"), warehouse)
    assert (unordered.updated, unordered.kept_newer) == (0, 4), "a run of unknown start ranks below known ones"


def test_replace_on_the_command_line_lets_the_last_export_win(app: typer.Typer, two_runs: TwoRuns,
                                                             tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _export(app, two_runs.full, str(warehouse))
    line = _export(app, two_runs.budget, str(warehouse), "--replace")
    rows = _duckdb_rows(warehouse)
    assert "kept" not in line, line
    assert len([r for r in rows if r[2] == "budget_reached"]) == 55  # what the user asked for


def _variant(source: Path, folder: Path, run_id: str, category: str) -> Path:
    """``source``'s rows as run ``run_id`` answered them (every ok row's category ``category``), no summary."""
    table = pl.read_parquet(source).with_columns(
        pl.lit(run_id).alias("_run_id"),
        pl.when(pl.col("_status") == "ok").then(pl.lit(category)).otherwise(pl.col("issue_category"))
        .alias("issue_category"))
    path = folder / f"{category}.parquet"
    table.write_parquet(path)
    return path


@pytest.mark.parametrize(("first", "second", "winner"), [
    (("20261126T140000Z-aaaa1111", "billing"), ("20261126T140000Z-bbbb2222", "shipping"), "shipping"),
    (("nightly-7", "billing"), ("20261127T000000Z-cccc3333", "shipping"), "shipping"),
])
def test_the_table_does_not_depend_on_the_export_order(app: typer.Typer, two_runs: TwoRuns, tmp_path: Path,
                                                       first: tuple[str, str], second: tuple[str, str],
                                                       winner: str) -> None:
    """Two runs started in the same second rank by run id; a run whose start is unknown ranks below
    every known one (both made the last export win, review r3 F3)."""
    outputs = [_variant(two_runs.full, tmp_path, run_id, category) for run_id, category in (first, second)]
    for name, order in (("ab", outputs), ("ba", outputs[::-1])):
        warehouse = tmp_path / f"{name}.duckdb"
        for output in order:
            _export(app, output, str(warehouse))
        held = {r[4] for r in _duckdb_rows(warehouse) if r[1] == "ok"}
        assert held == {winner}, (name, held)
