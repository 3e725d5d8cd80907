"""Ctrl-C and SIGTERM: an interrupted run exits 130 (143 for SIGTERM) with one line, keeps its
journal, leaves no lock or part files, and the rerun resumes.

Cancellation reaches every task waiting for a concurrency slot; the limiter must give the slot
back (or forget the waiter) without raising anything but ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class ReaskGateway:
    """An endpoint on a thread: each request is recorded by its document (the first user message)
    and kind (first request or re-ask). ``mode`` "hold": a first request is answered at once with an
    answer that fails the schema, a re-ask is held (no answer) until the gateway closes; "relay":
    everything is relayed to ``upstream`` (an emulator) and its answer returned."""

    def __init__(self, mode: str, upstream: str = "") -> None:
        gateway = self
        self.mode, self.upstream = mode, upstream
        self.firsts: list[str] = []
        self.reasks: list[str] = []
        self.held = threading.Semaphore(0)  # released once per re-ask held
        self.closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                gateway.answer(self, raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/paas/v4"

    def answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        messages = json.loads(raw)["messages"]
        first = len(messages) == 2
        (self.firsts if first else self.reasks).append(messages[1]["content"])
        if self.mode == "relay":
            request = urllib.request.Request(self.upstream + "/chat/completions", data=raw,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                data = response.read()
        elif first:
            data = json.dumps({"id": "t", "request_id": "r", "created": 1, "model": "glm-4-air-250414",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": '{"summary": 1}'}}],
                               "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}}).encode()
        else:
            self.held.release()
            self.closing.wait()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> ReaskGateway:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_while_rows_wait_for_reasks_keeps_their_answers_and_the_rerun_sends_no_first_request_again(
        tmp_path: Path) -> None:
    """Every first answer fails the schema and every re-ask hangs: SIGTERM once the slots hold re-asks.
    The answers paid for are kept owed their re-asks; the rerun sends those re-asks, no first request
    twice (C2 finding 1: 143 of 270 first requests were paid again)."""
    rows, cap = 40, 4
    source = write_tickets(tmp_path / "in.parquet", rows)
    output, journal = tmp_path / "out.parquet", tmp_path / "journal.sqlite"
    env = cli_env(journal)
    with ReaskGateway("hold") as gateway:
        argv = run_argv(source, output, gateway.base_url, cap, "--shard-size", "100")
        with subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            for _ in range(cap):  # every slot holds a re-ask
                assert gateway.held.acquire(timeout=120), "the re-asks never came"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=EXIT_WITHIN_S)
        paid = set(gateway.firsts)
    assert proc.returncode == TERMINATED_EXIT, stderr[-2000:]
    owed = journal_statuses(journal)
    assert owed.get(("invalid", "reask_pending"), 0) == len(paid) > 0, owed  # every answer bought is kept

    config = EmulatorConfig(concurrency=4 * cap, seed=6)
    with start_emulator(config) as emu, ReaskGateway("relay", emu.base_url) as relay:
        rerun = run_cli(run_argv(source, output, relay.base_url, cap, "--shard-size", "100"), env)
    assert rerun.returncode == 0, rerun.stderr
    assert not paid & set(relay.firsts)  # no first request paid twice
    assert set(relay.reasks) >= paid  # each kept answer's re-ask was sent instead


def journal_statuses(path: Path) -> dict[tuple[str, str | None], int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {(status, code): n for status, code, n in
                db.execute("SELECT status, error_code, count(*) FROM results GROUP BY 1, 2")}
    finally:
        db.close()
