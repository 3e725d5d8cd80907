"""End to end: the real CLI in a subprocess against the real emulator process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorProcess, start_emulator
from tests.conftest import REPO, SAMPLE

TICKETS = SAMPLE / "tickets.parquet"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=full_env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with start_emulator(EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.02"), seed=3)) as emu:
        yield emu


def test_offline_default_says_so_first_and_writes_one_row_per_row(tmp_path: Path) -> None:
    output = tmp_path / "tickets.parquet"
    done = cli("run", "--task", "ticket_qa", "--input", str(TICKETS), "--output", str(output), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("OFFLINE: no ZHIPUAI_API_KEY set")
    table = pl.read_parquet(output)
    source = pl.read_parquet(TICKETS)
    assert table.height == source.height
    assert table["ticket_id"].to_list() == source["ticket_id"].to_list()
    assert isinstance(table.schema["risk_flags"], pl.Struct) and isinstance(table.schema["entities"], pl.List)
    assert table["_status"].null_count() == 0
    summary = json.loads(output.with_name(output.name + ".summary.json").read_text())
    assert summary["offline_emulator"] is True and summary["rows"] == source.height
    assert summary["status_counts"] == {status: int((table["_status"] == status).sum())
                                        for status in summary["status_counts"]}  # every row counted once
    assert int((table["_status"] == "ok").sum()) > source.height // 2
    blank = table["text"].is_null() | (table["text"].str.strip_chars() == "")
    assert table.filter(blank)["_status"].to_list() == ["skipped"] * int(blank.sum())


def test_rerun_makes_zero_requests(tmp_path: Path, emulator: EmulatorProcess) -> None:
    output = tmp_path / "t.parquet"
    args = ("run", "--task", "ticket_qa", "--input", str(TICKETS), "--output", str(output), "-q",
            "--base-url", emulator.base_url, "--concurrency", "8")
    emulator.reset()
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    sent = emulator.stats()["requests_received"]
    assert sent > 0
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    assert emulator.stats()["requests_received"] == sent
    summary = json.loads((tmp_path / "t.parquet.summary.json").read_text())
    assert summary["requests"]["sent"] == 0 and summary["cost_cny"] == 0
    assert summary["endpoint"] == "custom" and summary["offline_emulator"] is False


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    done = cli("run", "--task", "ticket_qa", "--input", str(tmp_path / "nope.parquet"),
               "--output", str(tmp_path / "o.parquet"))
    assert done.returncode == 2
    assert "input not found" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()
    unknown = cli("run", "--task", "resumes", "--input", str(TICKETS), "--output", str(tmp_path / "o.parquet"))
    assert unknown.returncode == 2 and "unknown task 'resumes'" in unknown.stderr


def test_tasks_lists_builtin_tasks() -> None:
    done = cli("tasks")
    assert done.returncode == 0 and "ticket_qa" in done.stdout and "financial_report" in done.stdout


def test_a_budget_shows_in_the_summary_table_with_the_price_it_counted_cached_tokens_at(
        tmp_path: Path, emulator: EmulatorProcess) -> None:
    output = tmp_path / "budget.parquet"
    env = {"GLM_EXTRACT_JOURNAL_PATH": str(tmp_path / "journal.sqlite"), "COLUMNS": "200"}
    done = cli("run", "--task", "ticket_qa", "--input", str(TICKETS), "--output", str(output), "-q",
               "--base-url", emulator.base_url, "--concurrency", "8", "--budget-cny", "0.01", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(output.with_name(output.name + ".summary.json").read_text())
    line = next(row for row in done.stdout.splitlines() if "│" in row and "budget" in row.split("│")[1])
    assert "limit 0.01 CNY" in line and f"spent {summary['budget']['spent_cny']:.6f}" in line
    assert "cached tokens at 0.5 CNY/M" in line and "over" not in line
