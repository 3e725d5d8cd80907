"""The journal: a SQLite (WAL) file of every answer this account has paid for, keyed by content.

``results`` holds the verdict of a request key (status, parsed answer, usage); ``raw_answers``
keeps the last raw response body apart from the parse, so a better validator can re-judge stored
answers without paying again. Only *final* results are reused: a row that ran out of retries on a
transient fault is recorded with ``final = 0`` and asked again on the next run.

Writes are batched: callers ``add`` results and the journal commits everything added within one
event-loop tick in one transaction (``flush``), so an answer is durable as soon as the loop turns.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

SCHEMA_VERSION = 1
_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, final INTEGER NOT NULL,
        data_json TEXT, error_code TEXT, error_message TEXT,
        attempts INTEGER NOT NULL, reasks INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        latency_ms REAL, finish_reason TEXT, model TEXT, request_id TEXT,
        task TEXT, schema_id TEXT, created_at REAL NOT NULL)
    """,
    "CREATE TABLE IF NOT EXISTS raw_answers (key TEXT PRIMARY KEY, body BLOB NOT NULL)",
)
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class JournalEntry:
    """The verdict on one request key."""

    key: str
    status: str
    final: bool
    data_json: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float | None
    finish_reason: str | None
    model: str | None
    request_id: str | None
    task: str | None
    schema_id: str | None


_COLUMNS = ", ".join(JournalEntry.__dataclass_fields__)
_ROW_OF = attrgetter(*JournalEntry.__dataclass_fields__)  # ~40x cheaper than dataclasses.astuple


class Journal:
    """One connection per process (or per shard task); safe to share the file between processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        for statement in _MIGRATIONS:
            self._db.execute(statement)
        self._pending: list[tuple[JournalEntry, bytes | None]] = []

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, keys: Iterable[str]) -> dict[str, JournalEntry]:
        """Final entries for ``keys`` (missing and non-final keys are absent)."""
        unique = list(dict.fromkeys(keys))
        queued = {e.key: e for e, _ in self._pending if e.final}  # answered, not yet committed
        found: dict[str, JournalEntry] = {k: queued[k] for k in unique if k in queued}
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM results WHERE final = 1 AND key IN ({marks})", chunk
            )
            for row in rows:
                entry = _entry_from_row(row)
                found[entry.key] = entry
        return found

    def add(self, entry: JournalEntry, raw: bytes | None) -> None:
        """Queue an entry; ``flush`` (or the caller's tick callback) commits it."""
        self._pending.append((entry, raw))

    def flush(self) -> int:
        """Commit every queued entry in one transaction; return how many."""
        pending = self._pending
        if not pending:
            return 0
        now = time.time()
        marks = ",".join("?" * (len(JournalEntry.__dataclass_fields__) + 1))
        with _transaction(self._db):
            self._db.executemany(
                f"INSERT OR REPLACE INTO results ({_COLUMNS}, created_at) VALUES ({marks})",
                [(*_ROW_OF(e), now) for e, _ in pending],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO raw_answers (key, body) VALUES (?, ?)",
                [(e.key, raw) for e, raw in pending if raw is not None],
            )
        self._pending = []  # only once committed: a failed commit keeps them for the next flush
        return len(pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def count(self, *, final_only: bool = True) -> int:
        where = " WHERE final = 1" if final_only else ""
        return int(self._db.execute(f"SELECT count(*) FROM results{where}").fetchone()[0])

    def raw_answer(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT body FROM raw_answers WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _entry_from_row(row: Sequence[object]) -> JournalEntry:
    values = list(row)
    values[2] = bool(values[2])
    return JournalEntry(*values)  # type: ignore[arg-type]
