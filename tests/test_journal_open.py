"""Opening a journal another process holds waits for it, as every other journal lock does.

Two runs started at once on a journal that does not exist yet both create it: the first to switch
the file to WAL holds a lock while the other asks for the same switch. SQLite does not call its busy
handler for that switch, so the second run stopped at once with "journal … is locked by another
process" (exit 2): tests/test_journal_runs.py's two runs at once failed now and then that way."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import pipeline.journal as journal_module
from pipeline.journal import Journal, JournalError


def test_opening_a_new_journal_another_process_holds_waits_for_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is creating the journal
    met_the_lock = threading.Event()
    pause = getattr(journal_module, "_pause", time.sleep)

    def noting_pause(seconds: float) -> None:
        met_the_lock.set()
        pause(seconds)

    monkeypatch.setattr(journal_module, "_pause", noting_pause, raising=False)
    outcome: list[str] = []

    def open_it() -> None:
        try:
            Journal(path).close()
            outcome.append("opened")
        except JournalError as exc:
            outcome.append(str(exc))
        finally:
            met_the_lock.set()

    opener = threading.Thread(target=open_it)
    opener.start()
    assert met_the_lock.wait(timeout=60)
    holder.execute("COMMIT")
    holder.close()
    opener.join(timeout=60)
    assert outcome == ["opened"]
    with Journal(path) as journal:
        assert journal.count() == 0
