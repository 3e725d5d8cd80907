"""Fatal, account-wide errors (1113 as HTTP 429, 401/1002) stop the run fast and keep the journal.

The emulator answers every request from the N-th on with the fatal error. The run must stop after at
most cap + 1 further requests, exit 3 with one line telling the user what to do, write no output,
and leave a journal from which a rerun (after the fix) resumes without paying twice.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from tests.reliability.support import (
    cli_env,
    journal_count,
    journal_integrity,
    leftovers,
    one_error_line,
    run_argv,
    run_cli,
    summary_of,
    write_tickets,
)

ROWS = 300
CAP = 8
FROM = 120  # the first request (1-based) that gets the fatal answer
LATENCY = LatencySpec.parse("uniform:0.002,0.01")
RUN_ABORTED_EXIT = 3


@pytest.mark.parametrize(
    ("switch", "code", "status", "advice"),
    [
        ("fatal_1113_from", "1113", "429", "recharge"),
        ("fatal_401_from", "1002", "401", "check ZHIPUAI_API_KEY"),
    ],
)
def test_fatal_error_stops_fast_tells_what_to_do_and_resumes(
    tmp_path: Path, switch: str, code: str, status: str, advice: str
) -> None:
    source = write_tickets(tmp_path / "in.parquet", ROWS)
    output, journal = tmp_path / "out.parquet", tmp_path / "journal.sqlite"
    argv = run_argv(source, output, None, CAP, "--shard-size", "100")
    broken = EmulatorConfig(concurrency=CAP, latency=LATENCY, seed=5, **{switch: FROM})  # type: ignore[arg-type]
    with start_emulator(broken) as emu:
        done = run_cli([*argv, "--base-url", emu.base_url], cli_env(journal))
        stats = emu.stats()

    assert done.returncode == RUN_ABORTED_EXIT, done.stderr
    line = one_error_line(done.stderr)
    assert f"code {code}" in line and advice in line, line
    assert stats["by_code"].get(code, 0) >= 1 and stats["by_status"].get(status, 0) >= 1
    further = stats["requests_received"] - (FROM - 1)
    assert 1 <= further <= CAP + 1, f"{further} requests after the first fatal answer"
    assert not output.exists() and not summary_path(output).exists()
    assert leftovers(tmp_path, output) == []
    assert journal_integrity(journal) == "ok"
    assert journal_count(journal) == FROM - 1  # every answer received before the stop is kept

    healthy = EmulatorConfig(concurrency=CAP, latency=LATENCY, seed=5)
    with start_emulator(healthy) as emu:
        rerun = run_cli([*argv, "--base-url", emu.base_url], cli_env(journal))
        resent = emu.stats()["requests_received"]
    assert rerun.returncode == 0, rerun.stderr
    assert resent == ROWS - (FROM - 1)  # nothing already paid for is asked again
    table = pl.read_parquet(output)
    assert table.height == ROWS and table["_status"].to_list() == ["ok"] * ROWS
    assert int(table["_from_journal"].sum()) == FROM - 1
    assert summary_of(output)["requests"]["from_journal"] == FROM - 1


def summary_path(output: Path) -> Path:
    return output.with_name(output.name + ".summary.json")
