"""A run keeps going while another process holds the journal (``glm-extract journal prune`` deleting
and shrinking it): answers that arrive meanwhile are read, the shard is written, and every answer is
committed once the journal is free. ``journal prune`` during a run deletes politely and leaves the
shrinking for later, saying so in its one line."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest

from pipeline.glm.client import Endpoint
from pipeline.journal import Journal, JournalBusy, JournalEntry
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from tests.fakes import completion, document_of
from tests.names_task import write_names_task
from tests.reliability.support import cli_env, run_cli

ROWS = 4
DEADLINE_S = 30.0  # only ends a wait that a stalled run would never end; nothing is timed
TARGET = Target(Endpoint("http://glm.test/api/paas/v4"), "custom")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write_names_task(tmp_path)
    pl.DataFrame({"id": [f"r{i}" for i in range(ROWS)], "body": [f"person {i} wrote" for i in range(ROWS)]}
                 ).write_parquet(tmp_path / "in.parquet")
    return tmp_path


def settings(ws: Path) -> Settings:
    return Settings(schemas_dir=ws / "schemas", journal_path=ws / "journal.sqlite", concurrency=ROWS)


def answer(body: dict[str, object]) -> httpx.Response:
    return completion(orjson.dumps({"name": document_of(body)}).decode())


def run(ws: Path, handler: httpx.MockTransport, output: str, progressed: threading.Event | None = None) -> RunSummary:
    async def go() -> RunSummary:
        async with handler as transport:
            request = RunRequest("names", str(ws / "in.parquet"), ws / output)
            return await run_extraction(request, settings(ws), TARGET, transport=transport,
                                        on_progress=lambda _: progressed.set() if progressed else None)
    return asyncio.run(go())


def paid_long_ago(key: str) -> JournalEntry:
    return JournalEntry(key=key, status="ok", final=True, data_json='{"name": "x"}', error_code=None,
                        error_message=None, attempts=1, reasks=0, prompt_tokens=10, completion_tokens=5,
                        latency_ms=1.0, finish_reason="stop", model="glm-4-air-250414", request_id="r",
                        task="names", schema_id="names@1", cost_cny=0.0001, paid_at=1_600_000_000.0)


@contextmanager
def journal_held(path: Path) -> Iterator[None]:
    """Hold the journal's write lock from another connection, as ``journal prune`` does while it
    deletes and shrinks the file."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def gated(arrived: list[dict[str, object]], all_sent: threading.Event,
          gate: threading.Event) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """An endpoint that records each request, says when every row has been sent, and answers only
    once ``gate`` is set."""
    async def endpoint(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        arrived.append(body)
        if len(arrived) == ROWS:
            all_sent.set()
        await asyncio.to_thread(gate.wait, DEADLINE_S)
        return answer(body)
    return endpoint


def test_a_run_keeps_going_while_another_process_holds_the_journal(workspace: Path) -> None:
    all_sent, held, progressed = threading.Event(), threading.Event(), threading.Event()
    arrived: list[dict[str, object]] = []
    seen: dict[str, bool] = {}

    endpoint = gated(arrived, all_sent, held)  # every answer comes while the journal is held

    def pruner() -> None:
        all_sent.wait(DEADLINE_S)
        with journal_held(workspace / "journal.sqlite"):
            held.set()
            seen["progress while held"] = progressed.wait(DEADLINE_S)

    holder = threading.Thread(target=pruner)
    holder.start()
    try:
        summary = run(workspace, httpx.MockTransport(endpoint), "out.parquet", progressed)
    finally:
        held.set()
        holder.join()
    assert seen["progress while held"]  # the shard's answers were read and its part written meanwhile
    assert summary.count("ok") == ROWS and len(arrived) == ROWS
    with Journal(workspace / "journal.sqlite") as journal:
        assert journal.count() == ROWS  # no answer lost: each was committed once the journal was free
    again: list[dict[str, object]] = []

    async def record(request: httpx.Request) -> httpx.Response:
        again.append(orjson.loads(request.content))
        return answer(again[-1])

    rerun = run(workspace, httpx.MockTransport(record), "again.parquet")
    assert again == [] and rerun.requests.from_journal == ROWS


def test_prune_during_a_run_deletes_what_it_was_asked_and_leaves_shrinking_for_later(workspace: Path) -> None:
    journal = workspace / "journal.sqlite"
    with Journal(journal) as seeded:  # an answer paid long ago, for a row this run does not have
        seeded.add(paid_long_ago("long-ago"), None)
    all_sent, pruned = threading.Event(), threading.Event()
    arrived: list[dict[str, object]] = []
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    endpoint = gated(arrived, all_sent, pruned)  # the run is answering rows while prune runs

    def pruner() -> None:
        all_sent.wait(DEADLINE_S)
        try:
            done["prune"] = run_cli([sys.executable, "-m", "pipeline.cli", "journal", "prune", "--before",
                                     "2021-01-01", "--journal", str(journal)], cli_env(journal))
        finally:
            pruned.set()

    holder = threading.Thread(target=pruner)
    holder.start()
    try:
        summary = run(workspace, httpx.MockTransport(endpoint), "out.parquet")
    finally:
        pruned.set()
        holder.join()
    prune = done["prune"]
    assert prune.returncode == 0 and prune.stderr == "", prune.stderr
    lines = prune.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deleted 1 answers paid before 2021-01-01")
    assert "not shrunk: a run is using the journal" in lines[0]
    assert summary.count("ok") == ROWS
    with Journal(journal) as after:
        assert after.count() == ROWS and not after.lookup(["long-ago"])
    idle = run_cli([sys.executable, "-m", "pipeline.cli", "journal", "prune", "--before", "2021-01-01",
                    "--journal", str(journal)], cli_env(journal))
    assert idle.returncode == 0 and "not shrunk" not in idle.stdout  # idle again: shrunk


def test_a_run_is_at_work_on_the_journal_from_open_to_close_even_without_claims(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as pruner:
        assert not pruner.in_use()
        with Journal(path) as run_journal:
            run_journal.announce()
            assert pruner.in_use() and pruner.stats().live_claims == 0  # the mark is not a row's claim
        assert not pruner.in_use()


def test_a_commit_refused_by_a_held_journal_keeps_its_answers_for_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, write_wait_s=0.01) as journal:
        journal.add(paid_long_ago("a"), None)
        with journal_held(path):
            with pytest.raises(JournalBusy, match=f"journal {path} is locked by another process"):
                journal.flush()
            with pytest.raises(JournalBusy):
                journal.claim(["b"])
            assert journal.failure is None and journal.pending == 1
    # closing waited as long as the commands do, and committed: the journal was free again
    with Journal(path) as reopened:
        assert set(reopened.lookup(["a"])) == {"a"}
