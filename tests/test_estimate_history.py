"""`glm-extract estimate` learns from the journal's newest answers of the same task, model and kind of
endpoint, whatever the rows: a nightly job's input is new every night, and last night's real answers
must teach tonight's estimate (D40). An emulator's answers never teach an estimate for a real
endpoint; answers journaled before the journal recorded the kind (version 2) are not learnt from
across rows, and such a journal still opens, migrates and resumes paying nothing.

The fake real endpoint below re-asks heavily (four first answers in ten fail the schema) and answers
long (usage: 350 completion tokens per answer), far from the prior (5.6 % re-asks, an answer sized
from the schema), so an estimate on its prior misses a run on it by far more than 15 %.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from emulator import serve_in_thread
from emulator.answers import answer_request
from pipeline.journal import REAL, Journal, JournalEntry, recent_answers
from pipeline.settings import DEFAULT_MODEL
from pipeline.tokens import count_prompt_tokens
from tests.conftest import SAMPLE
from tests.fakes import document_of, serve_glm
from tests.test_estimate_realistic import FAULTY, emulator

TICKETS = SAMPLE / "tickets.parquet"
ANSWER_TOKENS = 350
FAILING_TENTHS = 4  # first answers that fail the schema, in tenths (by the document's hash)


@contextmanager
def heavy_glm(prompt_scale: float = 1.0) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real (not emulator) endpoint: first answers to some documents put a value outside the enum
    (a re-ask follows and is answered well); usage bills ``prompt_scale`` times our prompt count (what
    the platform's tokenizer makes of it) and :data:`ANSWER_TOKENS` per answer. Yields its URL and the
    requests that arrived."""
    def answer(body: dict[str, Any]) -> tuple[str, int, int]:
        data = json.loads(answer_request(body).text)
        first_ask = not any(m["role"] == "assistant" for m in body["messages"])
        if first_ask and hashlib.sha256(document_of(body).encode()).digest()[0] % 10 < FAILING_TENTHS:
            data["issue_category"] = "something else entirely"
        prompt = round(prompt_scale * count_prompt_tokens(body["messages"], body.get("tools")))
        return json.dumps(data), prompt, ANSWER_TOKENS

    with serve_glm(answer) as served:
        yield served


def nights(folder: Path) -> tuple[Path, Path]:
    """Two inputs with no row in common: night A (the sample's sendable tickets three times, each copy
    marked) and night B (two more copies)."""
    sample = pl.read_parquet(TICKETS).filter(pl.col("text").str.strip_chars() != "")
    copies = [sample.with_columns(pl.col("ticket_id") + f"-{k}", pl.col("text") + f"\n(ref. copy {k})")
              for k in range(5)]
    folder.mkdir()
    first, second = folder / "night_a.parquet", folder / "night_b.parquet"
    pl.concat(copies[:3]).write_parquet(first)
    pl.concat(copies[3:]).write_parquet(second)
    return first, second


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ}, timeout=300, check=False)  # fmt: skip


def run(cwd: Path, inputs: Path, base_url: str, journal: Path, name: str) -> dict[str, Any]:
    output = cwd / f"{name}.parquet"
    done = cli(cwd, "run", "--task", "ticket_qa", "--input", str(inputs), "--output", str(output), "-q",
               "--base-url", base_url, "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(output.with_name(output.name + ".summary.json").read_text(encoding="utf-8")))


def estimate(cwd: Path, inputs: Path, base_url: str, journal: Path) -> dict[str, Any]:
    done = cli(cwd, "estimate", "--task", "ticket_qa", "--input", str(inputs), "--json", "--base-url", base_url,
               "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def first_requests(summary: dict[str, Any]) -> int:
    """Distinct requests a run paid for: every answer it journaled."""
    return int(summary["requests"]["sent"] - summary["requests"]["reasks"])


def error(found: dict[str, Any], summary: dict[str, Any]) -> float:
    predicted = found["prompt_tokens"] + found["completion_tokens"]
    actual = summary["tokens"]["prompt"] + summary["tokens"]["completion"]
    return (predicted - actual) / actual


def test_last_nights_real_answers_teach_tonights_estimate_over_new_rows(tmp_path: Path) -> None:
    night_a, night_b = nights(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with heavy_glm() as (base_url, _):
        last_night = run(tmp_path, night_a, base_url, journal, "a")
        assert last_night["requests"]["reasks"] >= 40  # the re-asks are really there
        found = estimate(tmp_path, night_b, base_url, journal)
        tonight = run(tmp_path, night_b, base_url, journal, "b")
    assert found["from_journal"] == 0 and found["requests"] == first_requests(tonight)  # no row in common
    allowance = found["allowance"]
    assert allowance["learnt_from"] == allowance["learnt_from_other_rows"] == first_requests(last_night), allowance
    assert "other rows" in allowance["source"], allowance["source"]
    assert found["completion_per_request"] == ANSWER_TOKENS  # real answers teach the answer size too
    assert abs(error(found, tonight)) <= 0.15, (error(found, tonight), found, tonight["tokens"])


def test_last_nights_real_answers_teach_how_the_platform_counts_prompts(tmp_path: Path) -> None:
    """GLM's tokenizer is not our rule: a platform billing 0.7 of our count. Tonight's rows are new, so
    only last night's answers (the count each run recorded beside what was billed) can show it."""
    night_a, night_b = nights(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with heavy_glm(prompt_scale=0.7) as (base_url, _):
        run(tmp_path, night_a, base_url, journal, "a")
        found = estimate(tmp_path, night_b, base_url, journal)
        tonight = run(tmp_path, night_b, base_url, journal, "b")
    assert found["from_journal"] == 0 and found["prompt_scale_on"] > 0, found
    assert abs(found["prompt_scale"] - 0.7) <= 0.01, found["prompt_scale"]
    assert abs(error(found, tonight)) <= 0.15, (error(found, tonight), found, tonight["tokens"])


def test_one_packed_answer_in_the_history_does_not_hide_the_rest(tmp_path: Path) -> None:
    """Last night's answers are unpacked but for one share of a packed request (a pack tried once):
    the estimate leaves that share out and learns from the rest (it learnt nothing from any of them)."""
    night_a, night_b = nights(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with heavy_glm() as (base_url, _):
        last_night = run(tmp_path, night_a, base_url, journal, "a")
        with Journal(journal, endpoint_id="") as writing:  # a real answer, a share of a pack's bill
            writing.add(replace(entry("packed-share", task="ticket_qa"), model=DEFAULT_MODEL,
                                request_id="r-1#d1"), None)
            writing.flush()
        found = estimate(tmp_path, night_b, base_url, journal)
    allowance = found["allowance"]
    assert allowance["learnt_from_other_rows"] == first_requests(last_night), allowance
    assert "packed" not in allowance["source"], allowance["source"]


def test_an_emulators_answers_never_teach_an_estimate_for_a_real_endpoint(tmp_path: Path) -> None:
    night_a, night_b = nights(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    with serve_in_thread(emulator(FAULTY)) as emu:
        paid = run(tmp_path, night_a, emu.base_url, journal, "a")
        synthetic = estimate(tmp_path, night_b, emu.base_url, journal)
    assert paid["synthetic"] and paid["requests"]["reasks"] > 0
    # an emulator run's estimate learns from the emulator's answers to other rows ...
    assert synthetic["allowance"]["learnt_from_other_rows"] > 0.9 * paid["rows"], synthetic["allowance"]
    with heavy_glm() as (base_url, _):  # ... a real endpoint's estimate never does
        real = estimate(tmp_path, night_b, base_url, journal)
    assert real["allowance"]["learnt_from"] == 0 and "a prior of" in real["allowance"]["source"]
    assert real["calibrated_on"] == 0


#: Version 2 of the journal, as the code before version 3 created it (pipeline/journal.py at 11ff9dc).
V2_SCHEMA = (
    """CREATE TABLE results (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 1,
        data BLOB, answer BLOB, error_code TEXT, error_message TEXT,
        attempts INTEGER NOT NULL, reasks INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_cny REAL,
        latency_ms REAL, finish_reason TEXT, request_id TEXT,
        origin INTEGER NOT NULL REFERENCES origins (id), paid_at REAL NOT NULL)""",
    """CREATE TABLE origins (
        id INTEGER PRIMARY KEY, task TEXT, schema_id TEXT, model TEXT, UNIQUE (task, schema_id, model))""",
    "CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX claims_owner ON claims (owner)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)",
)
V2_COLUMNS = ("key, status, final, data, answer, error_code, error_message, attempts, reasks, prompt_tokens, "
              "completion_tokens, cost_cny, latency_ms, finish_reason, request_id, origin, paid_at")


def as_version_2(journal: Path, old: Path) -> None:
    """Write ``journal``'s answers into ``old``, a journal of version 2 (the previous schema)."""
    with closing(sqlite3.connect(old)) as db:
        for statement in V2_SCHEMA:
            db.execute(statement)
        db.execute("ATTACH DATABASE ? AS new", (str(journal),))
        db.execute(f"INSERT INTO results ({V2_COLUMNS}) SELECT {V2_COLUMNS} FROM new.results")
        db.execute("INSERT INTO origins (id, task, schema_id, model) SELECT id, task, schema_id, model "
                   "FROM new.origins")
        db.commit()
        db.execute("DETACH DATABASE new")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA user_version = 2")


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_version_2_journal_is_read_as_it_is_then_migrated_and_resumed_without_a_request(tmp_path: Path) -> None:
    night_a, night_b = nights(tmp_path / "in")
    new, old = tmp_path / "new.sqlite", tmp_path / "kept" / "journal.sqlite"
    with heavy_glm() as (base_url, requests):
        paid = run(tmp_path, night_a, base_url, new, "a")
        old.parent.mkdir()
        as_version_2(new, old)
        before = files(old.parent)
        read = estimate(tmp_path, night_a, base_url, old)  # read as it is, by key: these rows are answered
        assert files(old.parent) == before  # nothing written, nothing left next to it
        other_rows = estimate(tmp_path, night_b, base_url, old)  # which endpoint gave them is unknown
        sent = len(requests)
        again = run(tmp_path, night_a, base_url, old, "again")  # migrates, and pays nothing
        assert len(requests) == sent
        migrated = estimate(tmp_path, night_b, base_url, old)
    assert read["requests"] == 0 and read["from_journal"] == first_requests(paid)
    assert read["allowance"]["learnt_from"] == first_requests(paid)  # these rows' own answers teach as before
    assert other_rows["allowance"]["learnt_from"] == 0 and migrated["allowance"]["learnt_from"] == 0
    assert again["rows"] == again["requests"]["from_journal"] == paid["rows"] and again["requests"]["sent"] == 0
    with closing(sqlite3.connect(old)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == first_requests(paid)
        assert {row[0] for row in db.execute("SELECT endpoint FROM origins")} == {"unknown"}


def entry(key: str, *, reasks: int = 0, task: str = "t") -> JournalEntry:
    return JournalEntry(key=key, status="ok", final=True, data_json=None, error_code=None, error_message=None,
                        attempts=1, reasks=reasks, prompt_tokens=100, completion_tokens=20, latency_ms=None,
                        finish_reason="stop", model="m", request_id="r", task=task, schema_id="s")


def fill(path: Path, answers: int, other_task: int) -> None:
    """A journal of ``answers`` real answers of task ``t`` and ``other_task`` of task ``u``."""
    with Journal(path, endpoint_id="") as journal:
        for n in range(other_task):
            journal.add(entry(f"u{n}", task="u"), None)
        for n in range(answers):
            journal.add(entry(f"t{n}", reasks=n % 2), None)
        journal.flush()


def steps_to_read_newest(path: Path, limit: int) -> tuple[int, int]:
    """SQLite virtual-machine steps (in thousands) to read the newest ``limit`` answers, and how many."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with closing(sqlite3.connect(path)) as db:
        db.set_progress_handler(count, 1000)
        found = recent_answers(db, "t", "m", REAL, limit)
    return steps, len(found)


def test_reading_the_newest_answers_does_not_grow_with_the_journal(tmp_path: Path) -> None:
    small, large = tmp_path / "small.sqlite", tmp_path / "large.sqlite"
    fill(small, 300, 300)
    fill(large, 30_000, 30_000)
    small_steps, small_found = steps_to_read_newest(small, 200)
    large_steps, large_found = steps_to_read_newest(large, 200)
    assert small_found == large_found == 200
    assert large_steps <= small_steps + 2, (small_steps, large_steps)  # not a scan of 60,000 answers
    with closing(sqlite3.connect(large)) as db:
        newest = recent_answers(db, "t", "m", REAL, 3)
    assert [a.key for a in newest] == ["t29999", "t29998", "t29997"]


def test_rejudging_keeps_which_kind_of_endpoint_gave_an_answer(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    fill(path, 4, 0)
    with Journal(path) as journal:  # the journal commands open it without a kind
        journal.replace_verdicts([entry("t0"), entry("t1")])
    with closing(sqlite3.connect(path)) as db:
        assert [a.key for a in recent_answers(db, "t", "m", REAL, 10)] == ["t3", "t2", "t1", "t0"]
