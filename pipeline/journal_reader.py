"""The journal read and never written: what ``glm-extract estimate`` looks answers up in.

:class:`pipeline.journal.Journal` is a run's journal: opening it creates the file, migrates an old
one, marks it opened and proves it writable. An estimate must leave the file as it found it, so
:class:`JournalReader` opens it through SQLite's URI with writes switched off:

- a missing file, or an empty one (0 bytes, or SQLite with nothing in it), is no history;
- when a run holds the journal (its ``-wal`` exists), read-only (``mode=ro``): it reads what the run
  committed and creates nothing;
- otherwise read-write with ``PRAGMA query_only``: SQLite refuses every write, and the ``-wal`` and
  ``-shm`` files a WAL journal needs while open are removed again when it closes (a read-only
  connection would leave them behind).

A journal of the previous version (2) is read as it is, not migrated: its answers are found by key
as before, and since it did not record which kind of endpoint gave an answer, it offers no answers
to learn from across rows (:meth:`JournalReader.recent` is empty). Whatever else is not a current
journal (a folder, another SQLite file, a newer version or version 1, a corrupt file) is one line
naming the file, and the file is left untouched.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import first_line
from pipeline.journal import (
    LOCK_WAIT_S,
    PREVIOUS_VERSION,
    SCHEMA_VERSION,
    JournalEntry,
    JournalError,
    PastAnswer,
    is_busy,
    lookup_entries,
    recent_answers,
)

_USE_A_RUNS_JOURNAL = "pass --journal with the journal a run writes"


class JournalReader:
    """Final answers by request key, from a journal opened without writing to it."""

    def __init__(self, path: Path, db: sqlite3.Connection, version: int = SCHEMA_VERSION) -> None:
        self.path = path
        self._db = db
        self.version = version

    @classmethod
    def open(cls, path: Path) -> JournalReader | None:
        """The journal at ``path`` to read, or None when it holds no history (missing or empty)."""
        if not path.exists():
            return None
        if not path.is_file():
            raise JournalError(f"journal {path} is not a file: pass --journal with a file path")
        db = _connect(path)
        try:
            version = _check(db, path)
        except BaseException:
            db.close()
            raise
        if version is None:
            db.close()
            return None
        return cls(path, db, version)

    def lookup(self, keys: Iterable[str]) -> dict[str, JournalEntry]:
        """Final entries for ``keys`` (missing keys are absent)."""
        try:
            return lookup_entries(self._db, list(dict.fromkeys(keys)), version=self.version)
        except (sqlite3.Error, zlib.error, UnicodeDecodeError) as exc:  # a damaged page or answer
            raise _unreadable(self.path, exc) from None

    def recent(self, task: str, model: str, endpoint: str, limit: int) -> list[PastAnswer]:
        """The newest ``limit`` answers of ``task`` by ``model`` from ``endpoint`` (a kind: ``real`` or
        ``synthetic``), newest first; none from a version-2 journal (it recorded no kinds)."""
        if self.version != SCHEMA_VERSION:
            return []
        try:
            return recent_answers(self._db, task, model, endpoint, limit)
        except sqlite3.Error as exc:
            raise _unreadable(self.path, exc) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(path: Path) -> sqlite3.Connection:
    """``path`` opened so that nothing is written to it, nor left next to it."""
    run_holds_it = path.with_name(path.name + "-wal").exists()
    uri = f"{path.resolve().as_uri()}?mode={'ro' if run_holds_it else 'rw'}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None
    return db


def _check(db: sqlite3.Connection, path: Path) -> int | None:
    """The version of a journal this reads (current or previous), or None for an empty file; anything
    else raises."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None
    if version > SCHEMA_VERSION:
        raise JournalError(f"journal {path} has version {version}, newer than this glm-extract understands "
                           f"({SCHEMA_VERSION}): upgrade glm-extract or {_USE_A_RUNS_JOURNAL}")
    if version in (SCHEMA_VERSION, PREVIOUS_VERSION):
        return version
    if "results" in tables:
        raise JournalError(f"journal {path} is an older version, which estimate reads only once upgraded: "
                           f"`glm-extract journal stats --journal {path}` (or a run) upgrades it in place")
    if tables:
        raise JournalError(f"journal {path} holds other tables ({', '.join(sorted(tables))}), "
                           f"not a glm-extract journal: {_USE_A_RUNS_JOURNAL}")
    return None


def _unreadable(path: Path, exc: BaseException) -> JournalError:
    reason = first_line(exc)
    lowered = reason.lower()
    if is_busy(exc):
        return JournalError(f"journal {path} is locked by another process ({reason}); rerun when it is free")
    if "unable to open" in lowered or "permission" in lowered or "readonly" in lowered:
        return JournalError(f"journal {path} cannot be read ({reason}): make it readable, or {_USE_A_RUNS_JOURNAL}")
    return JournalError(f"journal {path} is corrupt or not a glm-extract journal ({reason}): {_USE_A_RUNS_JOURNAL}")
