"""Two runs on one journal: an answer another run journals between this run's look and its claim.

Run B paid first answers that failed the schema and stopped (a fatal 1113) before their re-asks: its
answers sit in the journal owed their re-ask (D38). Run A looked the keys up a moment before B
committed them, so A's look found nothing; A's claim then succeeds (an owed answer may be claimed).
A must send only the re-asks B owes, with B's paid answers, not pay the first requests again."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import RunAborted
from pipeline.journal import Journal, JournalEntry
from tests.fakes import FakeGLM, glm_error
from tests.test_budget_reasks import one_row
from tests.test_owed_reasks import CAP, TEXTS, bad_first_then, documents, stored
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name


def test_answers_another_run_journals_between_the_look_and_the_claim_are_not_paid_again(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    run_b = FakeGLM(default=bad_first_then(lambda body: glm_error(429, "1113", "no balance")))
    with pytest.raises(RunAborted):
        run(workspace, run_b, concurrency=CAP, shard_size=100)
    owed = stored(workspace)
    paid = documents(run_b.answered, first=True)
    assert paid and len(owed) == len(paid)
    with sqlite3.connect(workspace / "journal.sqlite") as db:  # as if B had not committed them yet
        db.execute("DELETE FROM results")

    original_lookup = Journal.lookup
    looks: list[int] = []

    def lookup_then_b_commits(self: Journal, keys: Iterable[str]) -> dict[str, JournalEntry]:
        found = original_lookup(self, keys)
        if not looks:  # run A's first look has been answered; now run B commits what it paid for
            with Journal(workspace / "journal.sqlite", owner="run-b") as journal_b:
                for entry in owed.values():
                    journal_b.add(entry, None)
                journal_b.flush()
        looks.append(len(found))
        return found

    monkeypatch.setattr(Journal, "lookup", lookup_then_b_commits)
    run_a = FakeGLM(default=bad_first_then(good))
    run(workspace, run_a, concurrency=CAP, shard_size=100, output="a.parquet")
    assert looks[0] == 0  # A's look came before B's commit
    assert sorted(documents(run_a.requests, first=True)) == sorted(set(TEXTS) - set(paid)), \
        "A paid B's first requests again"
    assert sorted(documents(run_a.requests, first=False)) == sorted(TEXTS)  # each row's re-ask, once
    reasked_with = {message["content"] for body in run_a.requests if len(body["messages"]) > 2
                    for message in body["messages"] if message["role"] == "assistant"}
    assert reasked_with == {'{"name": 1}'}  # the re-ask carries the answer B paid for
    assert pl.read_parquet(workspace / "a.parquet")["_status"].to_list() == ["ok"] * len(TEXTS)


def _entry(key: str, status: str, code: str | None) -> JournalEntry:
    return JournalEntry(key=key, status=status, final=True, data_json=None, error_code=code, error_message=None,
                        attempts=1, reasks=0 if code else 1, prompt_tokens=10, completion_tokens=5, latency_ms=None,
                        finish_reason="stop", model="m", request_id="r", task="t", schema_id="s",
                        answer='{"name": 1}')


def test_an_answer_queued_in_this_process_wins_over_the_owed_entry_it_replaces(tmp_path: Path) -> None:
    """One run, two shards: shard 0 re-asked an owed row and its final answer waits in the journal's
    queue (not committed yet) when shard 2 looks the same row up. Shard 2 must see the answer, not the
    owed entry underneath it, and must not be granted the row (it would pay the re-ask again: the
    full suite once saw 6 requests where 5 were due in test_budget_reasks)."""
    with Journal(tmp_path / "journal.sqlite", owner="run") as journal:
        journal.add(_entry("k", "invalid", "reask_pending"), None)
        journal.flush()
        journal.add(_entry("k", "ok", None), None)  # the re-ask's answer, queued
        assert journal.lookup(["k"])["k"].status == "ok"
        granted, owed = journal.claim_owed(["k"])
        assert granted == set() and owed == {}
        journal.add(_entry("q", "invalid", "reask_pending"), None)  # queued owed: still claimable, with its entry
        granted, owed = journal.claim_owed(["q"])
        assert granted == {"q"} and owed["q"].error_code == "reask_pending"


def test_a_version_3_journal_without_the_prompt_count_is_completed_on_open(tmp_path: Path) -> None:
    """Version 3 first shipped without ``results.counted_prompt``: such a file opens, gains the column
    and keeps its answers (it was refused: "lacks column(s) counted_prompt ... would be paid again")."""
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        journal.add(_entry("k", "ok", None), None)
        journal.flush()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE results DROP COLUMN counted_prompt")
    with Journal(path) as journal:
        assert journal.lookup(["k"])["k"].status == "ok"
