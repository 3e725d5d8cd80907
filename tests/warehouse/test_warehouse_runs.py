"""The runs audit rows: from the summary when there is one, else from the table's meta columns."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.warehouse import SourceError
from pipeline.warehouse.runs import RUNS_SCHEMA, RunRecord, from_summary, load_summary, run_records, to_arrow
from pipeline.warehouse.source import open_source

MakeTable = Callable[..., Path]

NOW = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC)
SUMMARY = {
    "run_id": "r1",
    "task": "ticket_qa",
    "input": "in.parquet",
    "output": "out.parquet",
    "started_at": "2026-11-26T14:00:00+00:00",
    "finished_at": "2026-11-26T14:00:12",
    "seconds": 12.3,
    "rows": 60,
    "status_counts": {"ok": 55, "invalid": 1, "failed": 1, "filtered": 1, "skipped": 2},
    "requests": {"sent": 70, "answered": 58, "from_journal": 3, "retries": 9, "reasks": 3},
    "tokens": {"prompt": 12345, "completion": 2345},
    "cost_cny": 0.0073,
    "latency_ms": {"p50": 210.0, "p95": 480.0},
    "model": "glm-4-air-250414",
    "prompt_version": "v1",
    "schema_id": "sha256:ab",
    "endpoint": "emulator",
    "offline_emulator": True,
    "limiter": "local",
}


def test_summary_is_flattened_into_one_runs_row() -> None:
    record = from_summary(SUMMARY, table="ticket_qa", exported_at=NOW)
    assert record == RunRecord(
        run_id="r1",
        task="ticket_qa",
        input="in.parquet",
        output="out.parquet",
        started_at=dt.datetime(2026, 11, 26, 14, tzinfo=dt.UTC),
        finished_at=dt.datetime(2026, 11, 26, 14, 0, 12, tzinfo=dt.UTC),
        seconds=12.3,
        rows=60,
        ok=55,
        invalid=1,
        failed=1,
        filtered=1,
        skipped=2,
        requests_sent=70,
        from_journal=3,
        retries=9,
        reasks=3,
        prompt_tokens=12345,
        completion_tokens=2345,
        cost_cny=0.0073,
        p50_ms=210.0,
        p95_ms=480.0,
        model="glm-4-air-250414",
        prompt_version="v1",
        schema_id="sha256:ab",
        endpoint="emulator",
        offline_emulator=True,
        limiter="local",
        table_name="ticket_qa",
        derived_from="summary",
        exported_at=NOW,
    )


def test_a_sparse_summary_gives_nulls_not_errors() -> None:
    record = from_summary({"run_id": "r2", "rows": "many", "status_counts": {"ok": 3}}, table="t", exported_at=NOW)
    assert (record.rows, record.ok, record.failed, record.model, record.started_at) == (None, 3, 0, None, None)


def test_without_a_summary_the_row_is_derived_from_meta_columns(make_table: MakeTable) -> None:
    source = open_source(make_table(run_id="run-5"))
    [record] = run_records(source, None, "ticket_qa", NOW)
    assert (record.run_id, record.task, record.rows, record.ok, record.failed) == ("run-5", "ticket_qa", 4, 3, 1)
    assert (record.requests_sent, record.prompt_tokens, record.completion_tokens) == (4, 400, 80)
    assert record.cost_cny == pytest.approx(0.004)
    assert record.model == "glm-4-air-250414" and record.derived_from == "table"
    assert record.started_at is None and record.retries is None


def test_summary_is_found_next_to_the_output(make_table: MakeTable, tmp_path: Path) -> None:
    path = make_table(summary=SUMMARY)
    assert load_summary(path, None) == SUMMARY
    assert load_summary(tmp_path / "elsewhere.parquet", None) is None
    with pytest.raises(SourceError, match="no such summary file"):
        load_summary(path, tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SourceError, match="not a run summary"):
        load_summary(path, bad)


def test_records_and_schema_agree() -> None:
    assert [f.name for f in dataclasses.fields(RunRecord)] == RUNS_SCHEMA.names
    table = to_arrow([from_summary(SUMMARY, table="t", exported_at=NOW)])
    assert table.schema == RUNS_SCHEMA and table.num_rows == 1
