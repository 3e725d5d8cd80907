"""`glm-extract estimate` at its edges, as a user runs it: the journal it is given is only ever read
(a folder, an empty file, another SQLite file, a journal a run is writing), and a blank model id."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import polars as pl
import pytest

from pipeline.journal import SCHEMA_VERSION, Journal
from tests.test_estimate_cli import TICKETS, cli, distinct_requests, estimate_json


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its content hash and modification time (a write changes one)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def refused(cwd: Path, *args: str) -> str:
    """The one stderr line of an estimate refused with exit 2."""
    done = cli(["estimate", "--task", "ticket_qa", "--input", str(TICKETS), *args], cwd)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A journal a finished run left behind (closed: no -wal, no -shm), and how many requests it answered."""
    folder = tmp_path_factory.mktemp("run")
    rows = folder / "rows.parquet"
    pl.read_parquet(TICKETS).head(12).write_parquet(rows)
    journal = folder / "journal.sqlite"
    done = cli(["run", "--task", "ticket_qa", "--input", str(rows), "--output", str(folder / "out.parquet"), "-q",
                "--journal", str(journal), "--emulator-latency", "fixed:0.001"], folder)
    assert done.returncode == 0, done.stderr
    assert not journal.with_name(journal.name + "-wal").exists()
    yield journal, distinct_requests(pl.read_parquet(rows))


def test_a_folder_as_journal_is_refused_like_run_does(tmp_path: Path) -> None:
    folder = tmp_path / "journal.d"
    folder.mkdir()
    line = refused(tmp_path, "--journal", str(folder))
    assert f"journal {folder} is not a file" in line, line


def test_an_empty_file_is_no_history_and_stays_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").touch()
    before = fingerprint(tmp_path)
    found = estimate_json(tmp_path, "--journal", str(tmp_path / "empty.sqlite"))
    assert found["from_journal"] == 0 and found["requests"] > 0
    assert fingerprint(tmp_path) == before  # 0 bytes still, no -wal/-shm, nothing else


def test_a_run_s_journal_is_read_and_left_byte_for_byte(tmp_path: Path, run_journal: tuple[Path, int]) -> None:
    journal, answered = run_journal
    before = fingerprint(journal.parent)
    found = estimate_json(tmp_path, "--journal", str(journal))
    assert found["from_journal"] == answered
    assert fingerprint(journal.parent) == before  # no "last opened" mark, no -wal/-shm left behind


def test_answers_a_live_run_committed_are_seen_and_its_files_left_alone(
        tmp_path: Path, run_journal: tuple[Path, int]) -> None:
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(run_journal[0].read_bytes())
    with Journal(journal):  # a run holding the journal open: its -wal and -shm exist
        before = fingerprint(tmp_path)
        assert journal.name + "-wal" in before
        found = estimate_json(tmp_path, "--journal", str(journal))
        after = fingerprint(tmp_path)
        assert after.keys() == before.keys()  # the -shm is shared memory: a reader marks what it reads there
        assert {n: after[n] for n in after if not n.endswith("-shm")} == {n: before[n] for n in before
                                                                          if not n.endswith("-shm")}
    assert found["from_journal"] == run_journal[1]


def sqlite_file(path: Path, *statements: str) -> Path:
    with closing(sqlite3.connect(path)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()
    return path


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: sqlite_file(p, "CREATE TABLE notes (text TEXT)"), "not a glm-extract journal"),
    (lambda p: p.write_bytes(b"these are not the answers you are looking for\n" * 100), "corrupt"),
    (lambda p: sqlite_file(p, f"PRAGMA user_version = {SCHEMA_VERSION + 1}"), "newer than this glm-extract"),
    (lambda p: sqlite_file(p, "CREATE TABLE results (key TEXT PRIMARY KEY, data_json TEXT)"),
     "glm-extract journal stats --journal"),
], ids=["other-tables", "not-sqlite", "newer-version", "version-1"])
def test_a_file_that_is_not_a_readable_journal_is_one_line_and_untouched(
        tmp_path: Path, make: Callable[[Path], object], says: str) -> None:
    path = tmp_path / "journal.sqlite"
    make(path)
    before = fingerprint(tmp_path)
    line = refused(tmp_path, "--journal", str(path))
    assert str(path) in line and says in line, line
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize("model", ["", "   "])
def test_a_blank_model_is_refused_by_estimate_and_run(tmp_path: Path, model: str) -> None:
    line = refused(tmp_path, "--model", model, "--journal", str(tmp_path / "j.sqlite"))
    assert "model" in line, line
    done = cli(["run", "--task", "ticket_qa", "--input", str(TICKETS), "--output", str(tmp_path / "o.parquet"),
                "--journal", str(tmp_path / "j.sqlite"), "-q", "--model", model], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "model" in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []  # no journal, no output

