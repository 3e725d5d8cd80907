"""Ctrl-C and SIGTERM: an interrupted run exits 130 (143 for SIGTERM) with one line, keeps its
journal, leaves no lock or part files, and the rerun resumes.

Cancellation reaches every task waiting for a concurrency slot; the limiter must give the slot
back (or forget the waiter) without raising anything but ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from pipeline.limiter import AdaptiveLimiter
from tests.reliability.support import (
    REPO,
    cli_env,
    journal_count,
    journal_integrity,
    leftovers,
    run_argv,
    run_cli,
    write_tickets,
)

ROWS = 600
CAP = 8
INTERRUPTED_EXIT = 130
TERMINATED_EXIT = 143
EXIT_WITHIN_S = 15


def test_a_cancelled_waiter_leaves_quietly_and_the_limiter_stays_consistent() -> None:
    async def scenario() -> None:
        limiter = AdaptiveLimiter(1)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)  # the waiter is queued
        waiter.cancel()  # its future is cancelled; the task has not run its except block yet
        limiter.release()  # the slot comes back while the cancelled waiter is still queued
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.in_flight == 0
        await asyncio.wait_for(limiter.acquire(), timeout=1)  # the slot is still usable

    asyncio.run(scenario())


def interrupt_mid_run(tmp_path: Path, sig: signal.Signals) -> tuple[int, str]:
    """Start a CLI run, send ``sig`` once 100 answers are journaled; check what it left behind and
    that the rerun pays only for the rest. Returns the interrupted run's exit code and stderr."""
    source = write_tickets(tmp_path / "in.parquet", ROWS)
    output, journal = tmp_path / "out.parquet", tmp_path / "journal.sqlite"
    config = EmulatorConfig(concurrency=4 * CAP, latency=LatencySpec.parse("fixed:0.05"), seed=6)
    with start_emulator(config) as emu:
        argv = run_argv(source, output, emu.base_url, CAP, "--shard-size", "100")
        env = cli_env(journal)
        with subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            deadline = time.monotonic() + 120
            while journal_count(journal) < 100:
                assert proc.poll() is None and time.monotonic() < deadline, f"the run ended before {sig.name}"
                time.sleep(0.02)
            assert (tmp_path / f".{output.name}.lock").exists()  # the run holds its output lock
            proc.send_signal(sig)
            try:
                _, stderr = proc.communicate(timeout=EXIT_WITHIN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail(f"{sig.name} did not end the run within {EXIT_WITHIN_S} s")
        sent, kept = emu.stats()["requests_received"], journal_count(journal)
        assert journal_integrity(journal) == "ok"
        assert not output.exists() and leftovers(tmp_path, output) == []  # no lock, no parts
        assert sent - kept <= CAP  # only the requests in flight at the interrupt are lost
        emu.reset()
        rerun = run_cli(argv, env)
        assert rerun.returncode == 0, rerun.stderr
        assert emu.stats()["requests_received"] == ROWS - kept
    return proc.returncode, stderr


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback_and_the_rerun_resumes(tmp_path: Path) -> None:
    returncode, stderr = interrupt_mid_run(tmp_path, signal.SIGINT)
    assert returncode == INTERRUPTED_EXIT, stderr[-2000:]
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-2000:]


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    returncode, stderr = interrupt_mid_run(tmp_path, signal.SIGTERM)
    assert returncode == TERMINATED_EXIT, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "resume" in lines[0], stderr[-2000:]
