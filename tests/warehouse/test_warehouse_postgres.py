"""PostgreSQL export against the server on 127.0.0.1:5432: idempotent upsert, JSONB, runs, errors."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from pipeline.warehouse import AccessDenied, LoadFailed, SchemaClash, TargetUnreachable, export_table

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]

Query = Callable[[str], list[tuple[Any, ...]]]
pytestmark = pytest.mark.postgres


def test_export_twice_gives_the_count_of_one_export(
    make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    source = make_table()
    first = export_table(source, pg_target)
    second = export_table(source, pg_target)
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.ticket_qa") == [(4,)]
    assert (first.inserted, first.updated, first.unchanged) == (4, 0, 0)
    assert (second.inserted, second.updated, second.unchanged, second.table_rows) == (0, 0, 4, 4)


def test_changed_row_is_updated_in_place(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    export_table(make_table(), pg_target)
    changed = frame().with_columns(
        pl.when(pl.col("_record_id") == "t-1").then(pl.lit(99)).otherwise(pl.col("priority")).alias("priority")
    )
    result = export_table(make_table(changed), pg_target)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 3)
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.ticket_qa") == [(4,)]
    assert pg_query(f"SELECT priority FROM {pg_schema}.ticket_qa WHERE _record_id = 't-1'") == [(99,)]


def test_nested_values_are_jsonb_and_scalars_keep_their_types(
    make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    export_table(make_table(), pg_target)
    types = dict(
        pg_query(
            f"SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{pg_schema}' AND table_name = 'ticket_qa'"
        )
    )
    assert types["entities"] == types["risk_flags"] == "jsonb"
    assert types["priority"] == "bigint" and types["_attempts"] == "integer"
    assert types["_from_journal"] == "boolean" and types["_cost_cny"] == "double precision"
    assert types["_record_id"] == "text"
    rows = pg_query(
        f"SELECT entities->0->>'type', (risk_flags->>'urgent')::boolean FROM {pg_schema}.ticket_qa ORDER BY _record_id"
    )
    assert rows[0] == ("person", True)


def test_runs_table_has_one_row_per_run(make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query) -> None:
    run1 = make_table(run_id="run-1")
    export_table(run1, pg_target)
    export_table(run1, pg_target)
    assert pg_query(f"SELECT run_id FROM {pg_schema}.runs") == [("run-1",)]
    export_table(make_table(run_id="run-2"), pg_target)
    assert pg_query(f"SELECT run_id, rows, ok, failed, model FROM {pg_schema}.runs ORDER BY run_id") == [
        ("run-1", 4, 3, 1, "glm-4-air-250414"),
        ("run-2", 4, 3, 1, "glm-4-air-250414"),
    ]
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.ticket_qa") == [(4,)]


def test_type_clash_names_the_column_and_leaves_the_table_untouched(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    export_table(make_table(), pg_target)
    clashing = frame(rows=6, run_id="run-2").with_columns(pl.col("priority").cast(pl.Float64))
    with pytest.raises(SchemaClash) as info:
        export_table(make_table(clashing), pg_target)
    message = str(info.value)
    assert "'priority'" in message and "bigint" in message and "double precision" in message
    assert "ALTER TABLE" in message and "\n" not in message
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.ticket_qa") == [(4,)]
    assert pg_query(f"SELECT run_id FROM {pg_schema}.runs") == [("run-1",)]
    pg_query(info.value.migration)
    assert export_table(make_table(clashing), pg_target).table_rows == 6


def test_failure_in_the_runs_merge_rolls_back_the_task_table(
    make_table: MakeTable, pg_url: str, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"; CREATE TABLE "{pg_schema}".runs (run_id integer)'.encode())
    with pytest.raises(SchemaClash, match="run_id"):
        export_table(make_table(), pg_target)
    assert pg_query(f"SELECT to_regclass('{pg_schema}.ticket_qa') IS NULL") == [(True,)]


def test_table_without_primary_key_gets_a_clear_error(
    make_table: MakeTable, pg_url: str, pg_target: str, pg_schema: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f'CREATE SCHEMA "{pg_schema}"; CREATE TABLE "{pg_schema}".ticket_qa (_task text, _record_id text)'.encode()
        )
    with pytest.raises(LoadFailed, match=r"no primary key on \(_task, _record_id\).*ADD PRIMARY KEY"):
        export_table(make_table(), pg_target)


def test_unreachable_server_is_a_clear_error_without_the_password(make_table: MakeTable, free_port: int) -> None:
    with pytest.raises(TargetUnreachable) as info:
        export_table(make_table(), f"postgresql://postgres:hunter2@127.0.0.1:{free_port}/test")
    message = str(info.value)
    assert f"127.0.0.1:{free_port}" in message and "refused" in message.lower()
    assert "hunter2" not in message and "***" in message
    assert info.value.transient


def test_unknown_role_and_missing_database_are_access_errors(make_table: MakeTable, pg_url: str) -> None:
    base = pg_url.rsplit("/", 1)[0]
    host = base.split("@")[-1].removeprefix("postgresql://")
    with pytest.raises(AccessDenied, match=r"no_such_role_glm.*check the user name"):
        export_table(make_table(), f"postgresql://no_such_role_glm@{host}/test")
    with pytest.raises(AccessDenied, match=r"no_such_db_glm.*create the database"):
        export_table(make_table(), f"{base}/no_such_db_glm")


def test_concurrent_exports_into_a_new_schema_both_land(
    make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    sources = [make_table(run_id=f"run-{i}", task=task) for i, task in enumerate(["ticket_qa", "ticket_qa", "other"])]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda path: export_table(path, pg_target), sources))
    assert sorted(r.table for r in results) == sorted([f"{pg_schema}.ticket_qa"] * 2 + [f"{pg_schema}.other"])
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.ticket_qa") == [(4,)]
    assert pg_query(f"SELECT count(*) FROM {pg_schema}.runs") == [(3,)]
