"""Crash and resume: ``kill -9`` the CLI early, in the middle and while it writes the output; rerun.

The emulator is deterministic and injects no faults, so an uninterrupted run makes exactly one
request per row and its table is the reference. After every kill: no file (or a complete one) at
the output path, an intact journal, and at most ``cap`` requests whose answers were lost (the ones
in flight). The final rerun's table equals the reference row for row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorProcess, start_emulator
from tests.reliability.support import (
    REPO,
    cli_env,
    comparable,
    journal_count,
    journal_integrity,
    run_argv,
    run_cli,
    ticket_frame,
    ticket_text,
)

pytestmark = pytest.mark.slow

ROWS = 900
CAP = 8
PADDING = " (transcript continues)" * 40  # longer rows: a bigger output, a wider window to kill in
WRITE_ATTEMPTS = 8  # the write window is short: retry until a kill lands inside it


@dataclass(frozen=True)
class Kill:
    """What one killed run did: requests it sent and answers it got into the journal."""

    point: str
    sent: int
    journaled: int


def test_kill_minus_9_at_several_points_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    ticket_frame(ROWS, texts=[ticket_text(i) + PADDING for i in range(ROWS)]).write_parquet(source)
    config = EmulatorConfig(concurrency=4 * CAP, latency=LatencySpec.parse("fixed:0.004"), seed=9)
    with start_emulator(config) as emu:
        reference = run_reference(tmp_path, source, emu)
        output, journal = tmp_path / "out.parquet", tmp_path / "chain.sqlite"
        argv = [*run_argv(source, output, emu.base_url, CAP, "--shard-size", "200")]
        env = cli_env(journal)
        emu.reset()
        kills = [
            kill_run(emu, argv, env, output, journal, "early", lambda: journal_count(journal) >= 60),
            kill_run(emu, argv, env, output, journal, "middle", lambda: journal_count(journal) >= ROWS // 2),
        ]
        finish = run_cli(argv, env)  # completes the journal, so the next runs go straight to writing
        assert finish.returncode == 0, finish.stderr
        kills.append(kill_while_writing(emu, argv, env, output, journal))
        final = run_cli(argv, env)
        total_sent = emu.stats()["requests_received"]

    assert final.returncode == 0, final.stderr
    # what an answer cost depends on the emulator's prompt cache at the time it was paid: the tokens
    # paid must match the reference, the price of each need not
    assert_frame_equal(comparable(pl.read_parquet(output)).drop("_paid_cost_cny"),
                       comparable(reference).drop("_paid_cost_cny"))
    for kill in kills:  # the answers lost at a kill are at most those in flight
        assert kill.sent - kill.journaled <= CAP, kill
    assert ROWS <= total_sent <= ROWS + CAP * len(kills), [*kills, total_sent]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.parquet.parts-")]


def run_reference(tmp_path: Path, source: Path, emu: EmulatorProcess) -> pl.DataFrame:
    """An uninterrupted run with its own journal: exactly one request per row."""
    output = tmp_path / "reference.parquet"
    emu.reset()
    done = run_cli(run_argv(source, output, emu.base_url, CAP, "--shard-size", "200"),
                   cli_env(tmp_path / "reference.sqlite"))
    assert done.returncode == 0, done.stderr
    assert emu.stats()["requests_received"] == ROWS
    table = pl.read_parquet(output)
    assert table["_status"].to_list() == ["ok"] * ROWS
    return table


def kill_run(emu: EmulatorProcess, argv: list[str], env: dict[str, str], output: Path, journal: Path,
             point: str, when: Callable[[], bool]) -> Kill:
    """Start the CLI, SIGKILL it once ``when()`` holds, and check what it left behind."""
    before_sent, before_journaled = emu.stats()["requests_received"], journal_count(journal)
    killed = run_until(argv, env, output, when, poll_s=0.01)
    assert killed, f"the run finished before the {point} kill point"
    assert_no_torn_output(output)
    assert journal_integrity(journal) == "ok"
    return Kill(point, emu.stats()["requests_received"] - before_sent, journal_count(journal) - before_journaled)


def kill_while_writing(emu: EmulatorProcess, argv: list[str], env: dict[str, str], output: Path,
                       journal: Path) -> Kill:
    """Kill once the temp file of the final write appears (``.out.parquet.<random>.tmp``)."""
    folder = output.parent

    def writing() -> bool:
        return any(name.startswith(".out.parquet.") and name.endswith(".tmp") and ".summary.json." not in name
                   for name in os.listdir(folder))

    for _ in range(WRITE_ATTEMPTS):
        output.unlink(missing_ok=True)
        before = emu.stats()["requests_received"]
        if run_until(argv, env, output, writing, poll_s=0.0):
            assert_no_torn_output(output)
            assert journal_integrity(journal) == "ok"
            return Kill("writing", emu.stats()["requests_received"] - before, 0)
    pytest.fail(f"no kill landed inside the output write in {WRITE_ATTEMPTS} tries")


def run_until(argv: list[str], env: dict[str, str], output: Path, when: Callable[[], bool],
              *, poll_s: float, timeout: float = 120) -> bool:
    """Run the CLI; SIGKILL it as soon as ``when()`` holds. True if killed, False if it ended first.

    While it runs, whatever sits at the output path must be a complete table."""
    with subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            assert_no_torn_output(output)
            if when():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            assert time.monotonic() < deadline, "the CLI did not reach the kill point in time"
            if poll_s:
                time.sleep(poll_s)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert proc.returncode == 0, stderr
        return False


def assert_no_torn_output(output: Path) -> None:
    """Nothing at the output path, or a complete Parquet file with every row."""
    try:
        rows = pq.read_metadata(output).num_rows
    except FileNotFoundError:
        return
    assert rows == ROWS, f"torn output: {rows} rows at {output}"
