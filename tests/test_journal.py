"""The journal as a library: answers round-trip compactly, claims keep runs from paying twice,
a broken or read-only file is refused with one line, a version-1 journal is migrated and reused."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest

from pipeline.journal import SCHEMA_VERSION, Journal, JournalEntry, JournalError, Pruned

ANSWER = {"issue_category": "refund", "summary": "charged twice for order ORD-1 (¥10.00)", "language": "en"}


def entry(key: str, *, status: str = "ok", final: bool = True, cost: float | None = 0.001,
          data: dict[str, object] | None = None) -> JournalEntry:
    data_json = orjson.dumps(data or ANSWER).decode() if status == "ok" else None
    return JournalEntry(
        key=key, status=status, final=final, data_json=data_json,
        error_code=None if status == "ok" else "schema_invalid", error_message=None, attempts=1, reasks=0,
        prompt_tokens=900, completion_tokens=120, latency_ms=12.5, finish_reason="stop", model="glm-4-air-250414",
        request_id="req-1", task="ticket_qa", schema_id="sha256:abc", cost_cny=cost)


def completion(content: str) -> bytes:
    return orjson.dumps({"id": "x", "request_id": "req-1", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 120}})


def test_an_answer_round_trips_with_its_cost_and_paid_time(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add(entry("k1"), completion(orjson.dumps(ANSWER).decode()))
        assert journal.flush() == 1
    with Journal(tmp_path / "j.sqlite") as journal:
        found = journal.lookup(["k1", "k2"])
    assert set(found) == {"k1"}
    got = found["k1"]
    assert orjson.loads(got.data_json or "") == ANSWER
    assert (got.cost_cny, got.prompt_tokens, got.completion_tokens, got.task, got.model) == (
        0.001, 900, 120, "ticket_qa", "glm-4-air-250414")
    assert got.paid_at is not None and got.paid_at > 1.7e9
    assert got.answer is None  # the model's text parsed to the stored answer: not stored twice


def test_an_answer_text_that_differs_from_its_parse_is_kept_for_rejudging(tmp_path: Path) -> None:
    fenced = "Here you go:\n```json\n" + orjson.dumps(ANSWER).decode() + "\n```"
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add(entry("k1"), completion(fenced))
        journal.add(entry("k2", status="invalid"), completion("not json at all"))
    with Journal(tmp_path / "j.sqlite") as journal:
        found = journal.lookup(["k1", "k2"])
    assert found["k1"].answer == fenced
    assert found["k2"].answer == "not json at all"


def test_a_non_final_outcome_is_not_kept(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add(entry("k1", status="failed", final=False), None)
        journal.flush()
        assert journal.lookup(["k1"]) == {}
        assert journal.count() == 0


def test_two_thousand_answers_take_at_most_about_a_kilobyte_each(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        for i in range(2000):
            answer = {**ANSWER, "summary": f"customer {i} was charged twice for order ORD-{100000 + 7 * i}"}
            journal.add(entry(f"sha256:{i:064x}", data=answer), completion(orjson.dumps(answer).decode()))
            if i % 100 == 99:
                journal.flush()
    size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))
    assert size <= 2000 * 1024, f"{size / 2000:.0f} bytes per row"


# ---- claims ---------------------------------------------------------------------------------------

def test_a_claimed_key_is_not_granted_to_another_owner_until_the_claim_expires(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.claim(["a", "b"], "run-1", 60, now=1000.0) == {"a", "b"}
        assert journal.claim(["a", "b", "c"], "run-2", 60, now=1010.0) == {"c"}
        assert journal.claim(["a"], "run-1", 60, now=1010.0) == {"a"}  # its own claim: renewed
        assert journal.claim(["a", "b"], "run-2", 60, now=1065.0) == {"b"}  # a renewed to 1070, b lapsed at 1060
        assert journal.claim(["a"], "run-2", 60, now=1071.0) == {"a"}


def test_an_answered_key_is_never_granted(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add(entry("a"), None)
        journal.flush()
        assert journal.claim(["a", "b"], "run-1", 60) == {"b"}


def test_committing_an_answer_or_releasing_frees_its_claim(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as first, Journal(path) as second:
        assert first.claim(["a", "b", "c"]) == {"a", "b", "c"}
        assert second.claim(["a", "b", "c"]) == set()
        first.add(entry("a"), None)  # answered: its claim goes with the commit
        first.add(entry("b", status="failed", final=False), None)  # given up: another run may ask
        first.flush()
        assert second.claim(["a", "b", "c"]) == {"b"}
        first.release(keys=["c"])
        assert second.claim(["c"]) == {"c"}


def test_closing_releases_the_owners_claims(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as first:
        first.claim(["a"])
    with Journal(path) as second:
        assert second.claim(["a"]) == {"a"}


def test_renewing_keeps_a_claim_alive(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.claim(["a"], "run-1", 60, now=1000.0)
        assert journal.renew("run-1", 60, now=1050.0) == 1
        assert journal.claim(["a"], "run-2", 60, now=1100.0) == set()
        assert journal.claim(["a"], "run-2", 60, now=1111.0) == {"a"}


# ---- files that cannot be used --------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"this is not a database " * 50, b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_file_that_is_not_a_journal_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=f"journal {path} .*move it aside") as caught:
        Journal(path)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_database_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=f"journal {path} holds other tables \\(orders\\)"):
        Journal(path)


def test_a_results_table_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, verdict TEXT)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="lacks column"):
        Journal(path)


def test_an_immutable_journal_is_refused_when_opened(tmp_path: Path, immutable) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        journal.add(entry("a"), None)
    immutable(path)
    with pytest.raises(JournalError, match=f"journal {path} is not writable"):
        Journal(path)


def test_a_journal_in_a_folder_that_cannot_be_written_is_refused(tmp_path: Path, immutable) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "locked"
    folder.mkdir()
    immutable(folder)
    with pytest.raises(JournalError, match=f"journal {folder / 'j.sqlite'} is not writable"):
        Journal(folder / "j.sqlite")


def test_a_failed_commit_is_remembered_and_named(tmp_path: Path, immutable) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    journal.add(entry("a"), None)
    journal.flush()
    immutable(path.with_name("j.sqlite-wal"))
    journal.add(entry("b"), None)
    with pytest.raises(JournalError, match=f"journal {path}"):
        journal.flush()
    assert journal.failure is not None
    with pytest.raises(JournalError):
        journal.flush()  # nothing more is accepted
    journal.close()  # and closing does not try again


# ---- version 1 ------------------------------------------------------------------------------------

V1_DDL = (
    """CREATE TABLE results (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, final INTEGER NOT NULL,
        data_json TEXT, error_code TEXT, error_message TEXT,
        attempts INTEGER NOT NULL, reasks INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        latency_ms REAL, finish_reason TEXT, model TEXT, request_id TEXT,
        task TEXT, schema_id TEXT, created_at REAL NOT NULL)""",
    "CREATE TABLE raw_answers (key TEXT PRIMARY KEY, body BLOB NOT NULL)",
)


def write_v1_journal(path: Path, rows: list[tuple[JournalEntry, bytes | None, float]]) -> None:
    """A journal as version 1 wrote it (uncompressed answers, raw bodies in their own table)."""
    db = sqlite3.connect(path)
    for statement in V1_DDL:
        db.execute(statement)
    for e, raw, created in rows:
        db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (e.key, e.status, int(e.final), e.data_json, e.error_code, e.error_message, e.attempts, e.reasks,
                    e.prompt_tokens, e.completion_tokens, e.latency_ms, e.finish_reason, e.model, e.request_id,
                    e.task, e.schema_id, created))
        if raw is not None:
            db.execute("INSERT INTO raw_answers VALUES (?, ?)", (e.key, raw))
    db.commit()
    db.close()


def test_a_version_1_journal_is_migrated_and_its_answers_reused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    fenced = "```json\n" + orjson.dumps(ANSWER).decode() + "\n```"
    write_v1_journal(path, [
        (entry("ok-plain"), completion(orjson.dumps(ANSWER).decode()), 1_700_000_000.0),
        (entry("ok-fenced"), completion(fenced), 1_700_000_001.0),
        (entry("invalid", status="invalid"), completion("nope"), 1_700_000_002.0),
        (entry("transient", status="failed", final=False), None, 1_700_000_003.0),
    ])
    with Journal(path) as journal:
        found = journal.lookup(["ok-plain", "ok-fenced", "invalid", "transient"])
        assert journal.count() == 3
    assert set(found) == {"ok-plain", "ok-fenced", "invalid"}
    assert orjson.loads(found["ok-plain"].data_json or "") == ANSWER
    assert found["ok-plain"].answer is None and found["ok-fenced"].answer == fenced
    assert found["invalid"].answer == "nope" and found["invalid"].status == "invalid"
    assert found["ok-plain"].paid_at == 1_700_000_000.0
    assert found["ok-plain"].cost_cny is None  # version 1 did not record it: priced when read
    assert (found["ok-plain"].prompt_tokens, found["ok-plain"].task) == (900, "ticket_qa")
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "raw_answers" not in tables and db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


# ---- operations -----------------------------------------------------------------------------------

def test_prune_deletes_only_answers_paid_before_the_date(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    write_v1_journal(path, [(entry("old"), None, 1_600_000_000.0), (entry("new"), None, 1_800_000_000.0)])
    with Journal(path) as journal:
        assert journal.prune(1_700_000_000.0, dry_run=True) == Pruned(1, shrunk=False)
        assert journal.count() == 2
        assert journal.prune(1_700_000_000.0) == Pruned(1, shrunk=True)
        assert set(journal.lookup(["old", "new"])) == {"new"}
        stats = journal.stats()
    assert stats.rows == 1 and stats.by_task_status == {("ticket_qa", "ok"): 1}


def test_the_claims_of_a_dead_process_on_this_host_are_taken_over_at_once(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])  # its pid is free once it has exited
    child.wait()
    ghost = f"{socket.gethostname()}:{child.pid}:deadbeef"
    living = f"{socket.gethostname()}:{os.getpid()}:cafe0000"
    elsewhere = f"another-host:{child.pid}:feed0000"
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.claim(["a"], ghost, 60)
        journal.claim(["b"], living, 60)
        journal.claim(["c"], elsewhere, 60)
        assert journal.claim(["a", "b", "c"], "rerun", 60) == {"a"}


def test_a_migrated_journal_gives_its_space_back(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    rows = []
    for i in range(1500):
        answer = orjson.dumps({**ANSWER, "summary": f"customer {i} was charged twice for order ORD-{i:06d}"}).decode()
        rows.append((entry(f"sha256:{i:064x}", data=orjson.loads(answer)), completion(answer), 1_700_000_000.0 + i))
    write_v1_journal(path, rows)
    before = path.stat().st_size
    with Journal(path) as journal:
        assert journal.count() == 1500
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert path.stat().st_size < before / 2, (before, path.stat().st_size)


def test_giving_up_on_a_key_frees_only_ones_own_claim(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as holder, Journal(path) as other:
        assert holder.claim(["a"]) == {"a"}
        other.add(entry("a", status="failed", final=False), None)  # it sent "a" without the claim
        other.flush()
        assert other.claim(["a"]) == set()  # the holder's claim still stands


def test_a_journal_whose_folder_is_a_file_or_which_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(JournalError, match=f"journal {tmp_path / 'plain' / 'j.sqlite'}: its folder cannot be created"):
        Journal(tmp_path / "plain" / "j.sqlite")
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(JournalError, match="is not a file"):
        Journal(tmp_path / "dir.sqlite")
