"""DuckDB export: idempotent merge, in-place updates, STRUCT/LIST kept, runs audit, clean failures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from pipeline.warehouse import (
    SchemaClash,
    SourceError,
    TargetUnreachable,
    export_table,
)

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def count(path: Path, table: str = "ticket_qa") -> int:
    return int(str(query(path, f"SELECT count(*) FROM {table}")[0][0]))


def test_export_twice_gives_the_count_of_one_export(make_table: MakeTable, tmp_path: Path) -> None:
    source, warehouse = make_table(), tmp_path / "w.duckdb"
    first = export_table(source, str(warehouse))
    second = export_table(source, str(warehouse))
    assert count(warehouse) == 4
    assert (first.inserted, first.updated) == (4, 0)
    assert (second.inserted, second.updated, second.unchanged, second.table_rows) == (0, 0, 4, 4)


def test_changed_row_is_updated_in_place(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(), str(warehouse))
    changed = frame().with_columns(
        pl.when(pl.col("_record_id") == "t-2").then(pl.lit("refund")).otherwise(pl.col("category")).alias("category")
    )
    result = export_table(make_table(changed), f"duckdb://{warehouse}")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 3)
    assert count(warehouse) == 4
    assert query(warehouse, "SELECT category FROM ticket_qa WHERE _record_id = 't-2'") == [("refund",)]


def test_new_rows_are_inserted_beside_existing_ones(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(frame(rows=5).head(3)), str(warehouse))
    result = export_table(make_table(rows=5), str(warehouse))
    assert (result.inserted, result.updated, result.unchanged) == (2, 0, 3)
    assert count(warehouse) == 5


def test_struct_and_list_stay_typed_and_queryable(make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(), str(warehouse))
    types = dict(
        query(warehouse, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ticket_qa'")
    )
    assert str(types["risk_flags"]).startswith("STRUCT(")
    assert str(types["entities"]).endswith("[]")
    rows = query(warehouse, "SELECT entities[1].type, risk_flags.urgent FROM ticket_qa ORDER BY _record_id")
    assert rows[0] == ("person", True)
    assert {"_task", "_record_id", "_run_id", "_status"} <= set(types)


def test_runs_table_has_one_row_per_run(make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    run1 = make_table(run_id="run-1")
    export_table(run1, str(warehouse))
    export_table(run1, str(warehouse))
    assert query(warehouse, "SELECT run_id FROM runs") == [("run-1",)]
    export_table(make_table(run_id="run-2"), str(warehouse))
    assert query(warehouse, "SELECT run_id, rows, ok, failed FROM runs ORDER BY run_id") == [
        ("run-1", 4, 3, 1),
        ("run-2", 4, 3, 1),
    ]
    assert count(warehouse) == 4, "the second run re-writes the same identities"
    assert query(warehouse, "SELECT DISTINCT _run_id FROM ticket_qa") == [("run-2",)]


def test_runs_row_comes_from_the_summary_when_present(make_table: MakeTable, tmp_path: Path) -> None:
    summary = {
        "run_id": "run-9",
        "task": "ticket_qa",
        "started_at": "2026-11-26T14:00:00+00:00",
        "rows": 4,
        "status_counts": {"ok": 3, "failed": 1},
        "requests": {"sent": 7, "retries": 2, "reasks": 1},
        "tokens": {"prompt": 400, "completion": 80},
        "cost_cny": 0.004,
        "latency_ms": {"p50": 10.0, "p95": 20.0},
        "model": "glm-4-air-250414",
        "endpoint": "emulator",
        "offline_emulator": True,
        "limiter": "local",
    }
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(run_id="run-9", summary=summary), str(warehouse))
    rows = query(
        warehouse,
        "SELECT run_id, requests_sent, retries, invalid, endpoint, offline_emulator, "
        "derived_from, year(started_at) FROM runs",
    )
    assert rows == [("run-9", 7, 2, 0, "emulator", True, "summary", 2026)]


def test_type_clash_names_the_column_and_leaves_the_table_untouched(
    frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(), str(warehouse))
    clashing = frame(rows=6, run_id="run-2").with_columns(pl.col("priority").cast(pl.String))
    with pytest.raises(SchemaClash) as info:
        export_table(make_table(clashing), str(warehouse))
    message = str(info.value)
    assert "'priority'" in message and "BIGINT" in message and "VARCHAR" in message
    assert "ALTER TABLE" in message and "--table ticket_qa_v2" in message
    assert "\n" not in message
    assert count(warehouse) == 4
    assert query(warehouse, "SELECT run_id FROM runs") == [("run-1",)]


def test_failure_in_the_runs_merge_rolls_back_the_task_table(make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE runs (run_id INTEGER)")
    with pytest.raises(SchemaClash, match="'run_id' of table 'runs'"):
        export_table(make_table(), str(warehouse))
    assert query(warehouse, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'ticket_qa'") == [(0,)]


def test_new_columns_are_added(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(frame().drop("category")), str(warehouse))
    result = export_table(make_table(), str(warehouse))
    assert result.added_columns == ("category",)
    assert query(warehouse, "SELECT count(*) FROM ticket_qa WHERE category IS NOT NULL") == [(4,)]


def test_table_override_and_schema(make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = export_table(make_table(), f"duckdb://{warehouse}?schema=analytics", table="Tickets v2")
    assert result.table == "analytics.tickets_v2"
    assert count(warehouse, "analytics.tickets_v2") == 4
    assert count(warehouse, "analytics.runs") == 1


def test_a_table_without_meta_columns_is_refused(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    plain = make_table(frame().drop("_task"))
    with pytest.raises(SourceError, match="not an enriched table: run `glm-extract run` first"):
        export_table(plain, str(tmp_path / "w.duckdb"))
    assert not (tmp_path / "w.duckdb").exists()


def test_a_file_locked_by_another_process_is_a_clear_transient_error(make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; con = duckdb.connect({str(warehouse)!r}); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(TargetUnreachable, match="in use by another process") as info:
            export_table(make_table(), str(warehouse))
        assert info.value.transient
    finally:
        holder.kill()
        holder.wait()


def test_the_suggested_migration_lets_a_widened_struct_through(
    frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(), str(warehouse))
    widened = frame(run_id="run-2").with_columns(
        pl.struct(pl.col("risk_flags").struct.unnest(), pl.lit("none").alias("legal")).alias("risk_flags")
    )
    source = make_table(widened)
    with pytest.raises(SchemaClash) as info:
        export_table(source, str(warehouse))
    assert info.value.column == "risk_flags" and info.value.migration in str(info.value)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(info.value.migration)
    result = export_table(source, str(warehouse))
    assert (result.updated, result.table_rows) == (4, 4)
    assert query(warehouse, "SELECT DISTINCT risk_flags.legal FROM ticket_qa") == [("none",)]


def test_a_text_id_that_became_an_integer_is_not_offered_an_alter_that_fails(
    app: typer.Typer, frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    """``ALTER … TYPE BIGINT`` cannot convert ``t-0``: the hint must not propose it (review r1 F14)."""
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(), str(warehouse))
    numeric = frame(run_id="run-2").with_columns(pl.Series("ticket_id", [0, 1, 2, 3]))
    result = CliRunner().invoke(app, ["export", "--output", str(make_table(numeric)), "--to", str(warehouse)])
    assert result.exit_code == 2
    message = result.stderr
    assert "'ticket_id'" in message and "VARCHAR" in message and "BIGINT" in message, message
    assert "Migrate with" not in message and "'t-0'" in message and "--table ticket_qa_v2" in message, message
    with pytest.raises(SchemaClash) as info:
        export_table(make_table(numeric), str(warehouse))
    assert info.value.migration == ""


def test_a_text_id_holding_only_numbers_is_offered_the_alter_and_it_works(
    frame: Frame, make_table: MakeTable, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(frame().with_columns(pl.Series("ticket_id", ["0", "1", "2", "3"]))), str(warehouse))
    numeric = make_table(frame(run_id="run-2").with_columns(pl.Series("ticket_id", [0, 1, 2, 3])))
    with pytest.raises(SchemaClash) as info:
        export_table(numeric, str(warehouse))
    assert "BIGINT" in info.value.migration and info.value.migration in str(info.value)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(info.value.migration)
    assert export_table(numeric, str(warehouse)).table_rows == 4
