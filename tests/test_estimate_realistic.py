"""`glm-extract estimate` against what a run on a faulty endpoint then pays: re-asked answers and
answers that run on to ``max_tokens`` are paid too, so the estimate must allow for them (issue 14,
"estimate vs actual within ±15 %").

Both runs go to a seeded in-thread emulator (answers instant, faults drawn from seed, content and
attempt, so every run of this file pays exactly the same tokens) over 290 distinct tickets: the
sample's 58 sendable texts five times, each copy marked so its request key, answer and fault draws
are its own. At ~6 % re-asks one re-ask is ~0.4 % of the tokens and one runaway ~0.2 %: no single
answer decides the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

from emulator import EmulatorConfig, serve_in_thread
from emulator.config import PROFILES, LatencySpec
from tests.conftest import SAMPLE
from tests.test_estimate_cli import realish_glm

TICKETS = SAMPLE / "tickets.parquet"
COPIES = 5
#: Turned up from the realistic table: about a quarter of first answers need a re-ask, 2 % run on
#: to max_tokens (docs/emulator.md, "Faults").
FAULTY = {"wrong_enum": 0.12, "missing_required": 0.06, "string_for_number": 0.02, "truncated": 0.02,
          "fence": 0.03, "1302": 0.01, "500": 0.01}


def tickets(folder: Path) -> Path:
    """290 distinct sendable tickets in two files (a folder that grew by a day); returns the first."""
    sample = pl.read_parquet(TICKETS).filter(pl.col("text").str.strip_chars() != "")
    copies = [sample.with_columns(pl.col("ticket_id") + f"-{k}", pl.col("text") + f"\n(ref. copy {k})")
              for k in range(COPIES)]
    rows = pl.concat(copies)
    folder.mkdir()
    half = rows.height // 2
    first, second = folder / "day1.parquet", folder / "day2.parquet"
    rows.head(half).write_parquet(first)
    rows.tail(rows.height - half).write_parquet(second)
    return first


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ}, timeout=300, check=False)  # fmt: skip


def estimate(cwd: Path, inputs: str, base_url: str, journal: Path) -> dict[str, Any]:
    done = cli(cwd, "estimate", "--task", "ticket_qa", "--input", inputs, "--json", "--base-url", base_url,
               "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def run(cwd: Path, inputs: str, base_url: str, journal: Path, name: str) -> dict[str, Any]:
    output = cwd / f"{name}.parquet"
    done = cli(cwd, "run", "--task", "ticket_qa", "--input", inputs, "--output", str(output), "-q",
               "--base-url", base_url, "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(output.with_name(output.name + ".summary.json").read_text(encoding="utf-8")))


def emulator(faults: dict[str, float]) -> EmulatorConfig:
    return EmulatorConfig.for_profile("realistic", faults=faults, latency=LatencySpec.parse("fixed:0"),
                                      load_slowdown=0.0, seed=7, concurrency=30)


def error(found: dict[str, Any], summary: dict[str, Any]) -> float:
    predicted = found["prompt_tokens"] + found["completion_tokens"]
    actual = summary["tokens"]["prompt"] + summary["tokens"]["completion"]
    return (predicted - actual) / actual


def test_the_estimate_learns_reasks_and_runaways_from_the_journal_and_lands_within_15_percent(
        tmp_path: Path) -> None:
    first = tickets(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with serve_in_thread(emulator(FAULTY)) as emu:
        yesterday = run(tmp_path, str(first), emu.base_url, journal, "day1")
        assert yesterday["requests"]["reasks"] >= 25  # the faults are really there
        found = estimate(tmp_path, str(tmp_path / "in" / "*.parquet"), emu.base_url, journal)
        today = run(tmp_path, str(tmp_path / "in" / "*.parquet"), emu.base_url, journal, "day2")
    distinct = pl.read_parquet(tmp_path / "in" / "*.parquet").select("channel", "text").unique().height
    assert found["requests"] + found["from_journal"] == distinct and found["from_journal"] >= 140  # day 1 paid
    assert today["requests"]["reasks"] >= 25
    assert abs(error(found, today)) <= 0.15, (error(found, today), found, today["tokens"])
    allowance = found["allowance"]  # said, and learnt from yesterday's (synthetic: an emulator run) answers
    assert allowance["learnt_from"] == found["from_journal"] and allowance["reasks_per_request"] > 0.15
    worst = found["worst_case"]
    assert worst["cost_cny"] > found["cost_cny"]
    assert worst["tokens"] > today["tokens"]["prompt"] + today["tokens"]["completion"]


def test_without_history_the_prior_covers_the_realistic_fault_table(tmp_path: Path) -> None:
    tickets(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with serve_in_thread(emulator(dict(PROFILES["realistic"].faults))) as emu:
        found = estimate(tmp_path, str(tmp_path / "in" / "*.parquet"), emu.base_url, journal)
        summary = run(tmp_path, str(tmp_path / "in" / "*.parquet"), emu.base_url, journal, "all")
    assert found["allowance"]["learnt_from"] == 0 and "prior" in found["allowance"]["source"]
    assert summary["requests"]["reasks"] > 0
    assert abs(error(found, summary)) <= 0.15, (error(found, summary), found, summary["tokens"])
    check = summary["estimate"]  # the run's own check (the answered requests, prior included) agrees
    assert check["requests"] <= found["requests"] and abs(check["error"]) <= 0.15, check


def test_synthetic_answers_never_teach_a_real_runs_allowance(tmp_path: Path) -> None:
    first = tickets(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with serve_in_thread(emulator(FAULTY)) as emu:
        paid = run(tmp_path, str(first), emu.base_url, journal, "day1")
        synthetic = estimate(tmp_path, str(first), emu.base_url, journal)
    assert paid["synthetic"] and synthetic["allowance"]["learnt_from"] == synthetic["from_journal"] > 0
    with realish_glm() as base_url:  # not an emulator: a real run's estimate
        real = estimate(tmp_path, str(first), base_url, journal)
    assert real["from_journal"] == 0 and real["allowance"]["learnt_from"] == 0
    assert "a prior of" in real["allowance"]["source"]
