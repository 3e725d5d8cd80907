"""Rules every entry point shares, each defined once: the failure ratio, the statuses, how an error
reaches the terminal, an exception's first line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import first_line
from pipeline.outcomes import MIN_ROWS_FOR_FAILURE_RATIO, STATUSES, excess_failures
from pipeline.warehouse.runs import RUNS_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def counts(**given: int) -> dict[str, int]:
    return {status: given.get(status, 0) for status in STATUSES}


def test_a_run_where_more_rows_failed_than_allowed_is_reported_with_its_numbers() -> None:
    verdict = excess_failures(counts(ok=4, failed=6), allowed_ratio=0.5)
    assert verdict is not None
    assert (verdict.failed, verdict.attempted) == (6, 10)
    assert verdict.describe(0.5) == "6 of 10 rows failed (over 50%)"


def test_exactly_the_allowed_ratio_is_not_too_many() -> None:
    assert excess_failures(counts(ok=5, failed=5), allowed_ratio=0.5) is None


def test_skipped_rows_are_not_attempted_and_small_runs_are_never_judged() -> None:
    small = MIN_ROWS_FOR_FAILURE_RATIO - 1
    assert excess_failures(counts(failed=small, skipped=50), allowed_ratio=0.1) is None
    verdict = excess_failures(counts(failed=MIN_ROWS_FOR_FAILURE_RATIO, skipped=50), allowed_ratio=0.1)
    assert verdict is not None and verdict.attempted == MIN_ROWS_FOR_FAILURE_RATIO


def test_the_runs_table_has_a_count_column_for_every_status() -> None:
    assert set(STATUSES) <= set(RUNS_SCHEMA.names)


@pytest.mark.parametrize(("message", "expected"), [("disk full\nat line 3", "disk full"), ("  \n", "OSError")])
def test_first_line_of_an_error_or_its_type_when_it_says_nothing(message: str, expected: str) -> None:
    assert first_line(OSError(message)) == expected


def test_a_journal_command_prints_a_path_with_brackets_as_it_is(tmp_path: Path) -> None:
    """Rich markup in an error message (here a file name) is printed, not interpreted."""
    journal = tmp_path / "[bold]nightly[/bold].sqlite"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "journal", "stats", "--journal", str(journal)],
                          capture_output=True, text=True, cwd=REPO, check=False, timeout=120)
    assert done.returncode == 2, done.stderr
    assert str(journal) in " ".join(done.stderr.split()), done.stderr


@pytest.mark.parametrize("command", [["run", "--output", "o.parquet", "--mode", "yaml"],
                                     ["estimate", "--mode", "yaml"]])
def test_an_invalid_option_is_one_line_naming_the_setting_in_every_command(tmp_path: Path, command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *command, "--task", "ticket_qa", "--input",
                           str(tmp_path / "in.parquet")], capture_output=True, text=True, cwd=tmp_path,
                          check=False, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: invalid setting mode:") and len(done.stderr.strip().splitlines()) == 1
