"""Fault matrix: 2,000 rows through the real CLI against an emulator injecting every transient fault.

One run (module fixture), many checks: one row out per row in, transient faults end ``ok``, 1301
ends ``filtered``, the client never exceeds its cap, and the summary agrees with the emulator's own
counters (see docs/reliability.md for which counters must match exactly, and why).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from tests.reliability.support import (
    SCHEMAS,
    cli_env,
    leftovers,
    run_argv,
    run_cli,
    summary_of,
    ticket_frame,
)

pytestmark = pytest.mark.slow

ROWS = 2_000
CAP = 24  # the client's --concurrency; the emulator allows more, so any overshoot would be visible
FAULTS = {
    "1302": 0.10,
    "500": 0.025, "503": 0.025,  # 5 % 5xx
    "hang": 0.02,
    "reset": 0.02,
    "malformed": 0.03,  # broken JSON
    "schema_violation": 0.03,
    "truncated": 0.01,
    "sensitive_input": 0.005,  # 1301, sticky per content
}  # fmt: skip
OUTPUT_FIELDS = ("issue_category", "customer_intent", "sentiment", "resolution_status", "sop_checks",
                 "risk_flags", "entities", "summary", "language")


@dataclass(frozen=True)
class MatrixRun:
    source: pl.DataFrame
    table: pl.DataFrame
    summary: dict[str, Any]
    emulator: dict[str, Any]
    returncode: int
    stderr: str
    leftovers: list[str]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixRun]:
    tmp = tmp_path_factory.mktemp("fault_matrix")
    source = ticket_frame(ROWS)
    source.write_parquet(tmp / "in.parquet")
    output = tmp / "out.parquet"
    config = EmulatorConfig(concurrency=4 * CAP, latency=LatencySpec.parse("uniform:0.002,0.02"), seed=11,
                            faults=FAULTS, hang_seconds=10.0)  # hangs outlive the client's 1 s read timeout
    with start_emulator(config) as emu:
        done = run_cli(run_argv(tmp / "in.parquet", output, emu.base_url, CAP, "--shard-size", "500"),
                       cli_env(tmp / "journal.sqlite"), timeout=240)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr
    yield MatrixRun(source, pl.read_parquet(output), summary_of(output), stats, done.returncode, done.stderr,
                    leftovers(tmp, output))


def test_every_input_row_appears_exactly_once_in_order(matrix: MatrixRun) -> None:
    table = matrix.table
    assert table.height == ROWS
    assert table["ticket_id"].n_unique() == ROWS
    assert_frame_equal(table.select(matrix.source.columns), matrix.source)
    assert table["_record_id"].to_list() == matrix.source["ticket_id"].to_list()
    assert table["_status"].null_count() == 0
    assert matrix.leftovers == []


def test_transiently_faulted_rows_end_ok_and_1301_rows_end_filtered(matrix: MatrixRun) -> None:
    table = matrix.table
    filtered = table.filter(pl.col("_status") == "filtered")
    assert filtered.height > 0
    assert filtered["_error_code"].unique().to_list() == ["1301"]
    rest = table.filter(pl.col("_status") != "filtered")
    ok = rest.filter(pl.col("_status") == "ok").height
    assert ok / rest.height >= 0.995, rest.group_by("_status", "_error_code").len()
    assert rest.filter(pl.col("_status") == "failed").height == 0  # 10 attempts outlast every transient fault
    # the few `invalid` rows drew a broken answer on the first try and on both re-asks
    invalid = rest.filter(pl.col("_status") == "invalid")
    assert set(invalid["_error_code"].to_list()) <= {"parse_error", "schema_invalid", "truncated"}


def test_ok_rows_carry_schema_valid_typed_fields_and_others_carry_none(matrix: MatrixRun) -> None:
    validator = jsonschema_rs.validator_for(orjson.loads((SCHEMAS / "ticket_qa" / "schema.json").read_bytes()))
    ok = matrix.table.filter(pl.col("_status") == "ok")
    for row in ok.select(OUTPUT_FIELDS).to_dicts():
        assert validator.is_valid(row), row
    not_ok = matrix.table.filter(pl.col("_status") != "ok").select(OUTPUT_FIELDS)
    assert all(not_ok[name].null_count() == not_ok.height for name in OUTPUT_FIELDS)


def test_every_fault_kind_was_actually_injected(matrix: MatrixRun) -> None:
    drawn = matrix.emulator["by_outcome"]
    for name in FAULTS:
        assert drawn.get(name, 0) > 0, f"fault {name} never drawn: the matrix would prove nothing"
    received = matrix.emulator["requests_received"]
    assert 0.06 <= drawn["1302"] / received <= 0.14


def test_client_never_exceeds_its_concurrency_cap(matrix: MatrixRun) -> None:
    assert matrix.emulator["max_in_flight"] <= CAP
    assert matrix.emulator["by_outcome"].get("over_capacity", 0) == 0
    assert matrix.summary["concurrency"] == CAP


def test_summary_counts_equal_the_emulators_counters(matrix: MatrixRun) -> None:
    requests, emu = matrix.summary["requests"], matrix.emulator
    # every attempt reaches the server, hangs and resets included
    assert requests["sent"] == emu["requests_received"]
    # a fresh request_id per attempt: no id is ever reused
    assert emu["unique_request_ids"] == emu["requests_received"]
    assert emu["duplicate_request_ids"] == 0 and emu["requests_without_request_id"] == 0
    # 200 bodies read by the client = 200s the server sent (resets and abandoned hangs send none)
    assert requests["answered"] == emu["by_status"]["200"]
    assert requests["rate_limited"] == emu["by_code"]["1302"]
    # each fault-free answer ends exactly one row `ok`; each 1301 ends exactly one row `filtered`
    counts = matrix.summary["status_counts"]
    assert counts["ok"] == emu["completed_ok"]
    assert counts["filtered"] == emu["by_code"]["1301"]
    # attempts = one first try per row + one per re-ask + one per retry
    assert requests["sent"] == ROWS + requests["reasks"] + requests["retries"]


def test_summary_counts_equal_the_table(matrix: MatrixRun) -> None:
    table, summary = matrix.table, matrix.summary
    assert summary["rows"] == ROWS
    by_status = dict(table.group_by("_status").len().iter_rows())
    assert {k: v for k, v in summary["status_counts"].items() if v} == by_status
    assert int(table["_reasks"].sum()) == summary["requests"]["reasks"]
    assert int(table["_prompt_tokens"].sum()) == summary["tokens"]["prompt"]
    assert int(table["_completion_tokens"].sum()) == summary["tokens"]["completion"]
    assert summary["requests"]["from_journal"] == 0 and not table["_from_journal"].any()
    errors = {e["code"]: e["count"] for e in summary["errors"]}
    assert errors.get("1301") == by_status.get("filtered")


def test_attempts_column_counts_every_request_of_the_row(matrix: MatrixRun) -> None:
    filtered = matrix.table.filter(pl.col("_status") == "filtered")
    assert filtered["_attempts"].min() >= 1  # a 1301 answer is one request on the wire
    assert int(matrix.table["_attempts"].sum()) == matrix.summary["requests"]["sent"]
