"""The journal: a SQLite (WAL) file of every answer this account has paid for, keyed by content.

``results`` holds the final verdict of a request key: status, the parsed answer (compressed), what
it cost when it was paid and when. Only final verdicts are stored: an outcome a rerun should ask
again (a transient fault out of retries, the budget reached before a row was paid for, the run
stopped) is never journaled. One kind is kept though not final, because it was paid for: an answer
that failed the schema and is owed its re-ask (``invalid`` with ``reask_pending``: journaled as soon
as it is judged, and replaced by the row's final verdict; or ``budget_reached``: its re-ask did not
fit the budget). A run that stopped before the re-ask, or a later run, claims that key again and
sends only the re-ask (:func:`is_reask_due`). While the run that journaled a ``reask_pending`` entry
is sending its re-ask it keeps the key's claim, so no other run sends it too.
The model's answer text is kept (compressed) only where it differs from the parsed answer, so
``glm-extract rejudge`` can judge stored answers again without paying.

``origins`` says where an answer came from: its task, schema and model, and the kind of endpoint that
gave it (``endpoint``: ``real``, ``synthetic`` for an emulator's, ``unknown`` for answers journaled
before version 3 or by a journal not opened by a run). A run's journal records its endpoint's kind
(``Journal(path, endpoint_id=...)``, the same ``endpoint_id`` its request keys carry), so ``glm-extract
estimate`` can learn from the newest answers of a task, model and kind whatever the rows
(:func:`recent_answers`); an unknown kind is never learnt from.

``claims`` lets runs that share the file pay once: a run claims the keys it is about to send, with
an expiry that the live run keeps pushing forward; another run waits for those answers instead of
sending them, and takes a claim over once it has expired (its owner was killed).

Writes are batched: callers ``add`` results and the journal commits everything added within one
event-loop tick in one transaction (``flush``), so an answer is durable as soon as the loop turns.
Every problem with the file itself raises :class:`JournalError` (one line naming the file).

Another process may hold the file's write lock for a while (``glm-extract journal prune`` deleting,
another run committing). A run's journal (``write_wait_s``) waits only briefly for it and then raises
:class:`JournalBusy`, keeping what it was given: the run's event loop never stalls on the lock, and
it tries again later. Reads never wait for writers (WAL).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import GlmExtractError, first_line
from pipeline.keys import SYNTHETIC_ENDPOINT

SCHEMA_VERSION = 3  # PRAGMA user_version of a current journal; 0 with a ``results`` table is version 1
PREVIOUS_VERSION = 2  # migrated in place by a run's journal; read as it is by ``JournalReader``
CLAIM_TTL_S = 60.0  # a claim lapses this long after its owner last renewed it
LOCK_WAIT_S = 60.0  # how long opening, reading, closing and the journal commands wait for a lock
BUSY_PAUSE_S = (0.05, 0.5)  # a run's journal refused a lock: it tries again after this much, doubling up to the max
PRUNE_BATCH = 500  # rowids prune deletes from per transaction (~10 ms of the lock)
PRUNE_PAUSE_S = 0.02  # between prune's transactions while a run uses the journal: its claims and commits get in
RUN_MARK = "run:"  # the claim key marking a run at work on the journal (request keys are hex digests)
_LOOKUP_CHUNK = 500
WAL_RETRY_S = 0.01  # opening: how often the switch to WAL is tried again while another process holds a lock
#: The status and error codes of a stored answer owed its re-ask: journaled as it was judged, its re-ask
#: on its way (``reask_pending``), sent but never answered (``reask_unanswered``: only transient faults
#: until the retries ran out, the run stopped, or the budget refused a retry; it does not count against
#: ``--max-reasks``), or refused by the budget (``budget_reached``). A later run claims it and sends the
#: re-ask (:func:`is_reask_due`); every other stored answer is final.
REASK_DUE_STATUS = "invalid"
REASK_PENDING = "reask_pending"
REASK_UNANSWERED = "reask_unanswered"
REASK_DUE_CODES = ("budget_reached", REASK_PENDING, REASK_UNANSWERED)
_REASK_DUE = (f"(status = '{REASK_DUE_STATUS}' AND coalesce(error_code, '') IN "
              f"({', '.join(repr(code) for code in REASK_DUE_CODES)}))")  # SQL of :func:`is_reask_due`
_NOT_REASK_DUE = f"NOT {_REASK_DUE}"
#: The kinds of endpoint an answer came from (``origins.endpoint``).
REAL, SYNTHETIC, UNKNOWN = "real", "synthetic", "unknown"
_HOST = socket.gethostname()
_RESULTS = """
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 1,
        data BLOB, answer BLOB, error_code TEXT, error_message TEXT,
        attempts INTEGER NOT NULL, reasks INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_cny REAL,
        latency_ms REAL, finish_reason TEXT, request_id TEXT,
        origin INTEGER NOT NULL REFERENCES origins (id), paid_at REAL NOT NULL,
        counted_prompt INTEGER NOT NULL DEFAULT 0)
"""
_ORIGINS = f"""
    CREATE TABLE IF NOT EXISTS {{name}} (
        id INTEGER PRIMARY KEY, task TEXT, schema_id TEXT, model TEXT, endpoint TEXT NOT NULL DEFAULT '{UNKNOWN}',
        UNIQUE (task, schema_id, model, endpoint))
"""
_SCHEMA = (
    _RESULTS,
    _ORIGINS.format(name="origins"),
    "CREATE INDEX IF NOT EXISTS results_origin ON results (origin)",  # an origin's newest answers, by rowid
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS claims_owner ON claims (owner)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)",
)
_WHAT_TO_DO = "move it aside (or pass --journal NEW_PATH) and rerun; answers in it would be paid again"


class JournalError(GlmExtractError):
    """The journal file cannot be used: unreadable, corrupt, not a journal, or not writable."""


class JournalBusy(JournalError):
    """Another process holds the journal's lock; nothing was written (try again later)."""


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
    cost_cny: float | None = None  # what the answer cost when it was paid (None: not recorded)
    answer: str | None = None  # the model's last answer text (the client's parse, or read back from the journal)
    paid_at: float | None = None  # epoch seconds of the commit, as read back from the journal
    endpoint_kind: str | None = None  # REAL, SYNTHETIC or UNKNOWN as read back; None: the journal's (when added)
    counted_prompt: int = 0  # our count of the row's first (unpacked) prompt, by pipeline.tokens; 0: not counted
    before: JournalEntry | None = None  # not stored: this key's entry as an earlier run left it (a re-ask was due)


def endpoint_kind(endpoint_id: str | None) -> str:
    """The kind of endpoint behind a request key's ``endpoint_id`` (:func:`pipeline.keys.request_key`):
    ``""`` a real endpoint, :data:`~pipeline.keys.SYNTHETIC_ENDPOINT` an emulator; None (not said),
    or a marker this version does not know, :data:`UNKNOWN`."""
    if endpoint_id == "":
        return REAL
    return SYNTHETIC if endpoint_id == SYNTHETIC_ENDPOINT else UNKNOWN


@dataclass(frozen=True)
class PastAnswer:
    """What one stored answer was billed, without its texts: what the estimate learns from."""

    key: str
    status: str
    error_code: str | None
    attempts: int
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    request_id: str | None
    counted_prompt: int  # our count of its first prompt (0: not counted, e.g. journaled before it was)

    @property
    def owed(self) -> bool:
        """Paid for and owed its re-ask (:func:`is_reask_due`): its outcome is not known yet."""
        return self.status == REASK_DUE_STATUS and self.error_code in REASK_DUE_CODES


def is_reask_due(entry: JournalEntry) -> bool:
    """A stored answer paid for and owed its re-ask (on its way, or not allowed by the budget): a run
    that finds it sends only the re-ask."""
    return entry.status == REASK_DUE_STATUS and entry.error_code in REASK_DUE_CODES


@dataclass(frozen=True)
class JournalStats:
    """What ``glm-extract journal stats`` prints."""

    path: Path
    bytes_on_disk: int
    rows: int
    by_task_status: dict[tuple[str, str], int]
    paid_cny: float
    oldest: float | None
    newest: float | None
    live_claims: int


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` did: answers deleted (or counted), and whether the file was shrunk."""

    answers: int
    shrunk: bool


def default_owner() -> str:
    """This process's claim owner: host, pid and a random tag (pids are reused)."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only for an owner that certainly died: a process of this host that no longer exists
    (a rerun after ``kill -9`` need not wait for the dead run's claims to expire)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != _HOST or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is not ours to signal
        return True
    return True


class Journal:
    """One connection per process (or per shard task); safe to share the file between processes.

    Opening checks the file: a corrupt file or one that is not a journal, and a journal that cannot
    be written, raise :class:`JournalError` before anything is sent. A journal of version 1 or 2 is
    migrated in place (once, by whichever process opens it first). ``endpoint_id``: the one a run's
    request keys carry; the answers it adds are recorded as that kind of endpoint's
    (:func:`endpoint_kind`; not given: :data:`UNKNOWN`).
    """

    def __init__(self, path: Path, *, owner: str | None = None, claim_ttl_s: float = CLAIM_TTL_S,
                 write_wait_s: float = LOCK_WAIT_S, endpoint_id: str | None = None) -> None:
        self.path = path
        self.endpoint = endpoint_kind(endpoint_id)
        self.owner = owner or default_owner()
        self.claim_ttl_s = claim_ttl_s
        self.write_wait_s = write_wait_s  # claim, renew, flush: then JournalBusy
        self._busy_until = 0.0  # monotonic time before which a run's journal does not knock again
        self._busy_pause = 0.0
        self._pending: list[tuple[JournalEntry, bytes | None]] = []
        self._released: list[str] = []
        self._origins: dict[tuple[str | None, str | None, str | None, str], int] = {}
        self.failure: JournalError | None = None  # set once a commit failed; nothing more is accepted
        self._db = _open(path)
        try:
            with self._guard("open"):
                if _prepare(self._db, path):  # migrated: give the space of version 1 back to the disk
                    self._db.execute("VACUUM")
        except BaseException:
            self._db.close()
            raise

    # ---- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued (waiting as long as the commands do) and drop this owner's claims."""
        self.write_wait_s = LOCK_WAIT_S
        try:
            if self.failure is None:
                self.flush()
                self.release(self.owner)
        finally:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- answers ----------------------------------------------------------------------------

    def lookup(self, keys: Iterable[str]) -> dict[str, JournalEntry]:
        """Final entries for ``keys`` (missing keys are absent): a queued entry (answered, not yet
        committed) over the committed one it replaces (an owed answer whose re-ask has been answered)."""
        unique = list(dict.fromkeys(keys))
        with self._guard("read"):
            found = lookup_entries(self._db, unique)
        queued = self._queued()
        found.update((k, queued[k]) for k in unique if k in queued)
        return found

    def _queued(self) -> dict[str, JournalEntry]:
        """Entries added and not committed yet, by key (the last one added wins; only kept entries are queued)."""
        return {entry.key: entry for entry, _ in self._pending}

    def add(self, entry: JournalEntry, raw: bytes | None) -> None:
        """Queue a final entry (``raw``: the HTTP body of its last answer); ``flush`` commits it."""
        if entry.final:
            self._pending.append((entry, raw))
        else:
            self._released.append(entry.key)  # nothing to keep: let another run ask again

    def flush(self) -> int:
        """Commit every queued entry (and drop their claims, except those of answers whose re-ask this
        run is sending: ``reask_pending``) in one transaction; return how many.

        A failed commit raises :class:`JournalError` and is remembered in ``failure``; a journal
        another process holds raises :class:`JournalBusy` and keeps the entries for the next flush."""
        if self.failure is not None:
            raise self.failure
        pending, released = self._pending, self._released
        if not pending and not released:
            return 0
        try:
            with self._writing("commit to"):
                now = time.time()
                rows = [self._row_of(entry, raw, now) for entry, raw in pending]
                self._db.executemany(f"INSERT OR REPLACE INTO results ({_COLUMNS}) VALUES ({_MARKS})", rows)
                self._db.executemany("DELETE FROM claims WHERE key = ?",
                                     [(e.key,) for e, _ in pending if e.error_code != REASK_PENDING])
                self._db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?",
                                     [(key, self.owner) for key in released])
        except JournalBusy:
            self._origins.clear()  # ids taken in a rolled-back transaction are not in the file
            raise
        except JournalError as exc:
            self.failure = exc
            self._origins.clear()
            raise
        self._pending, self._released = [], []  # only once committed
        return len(pending)

    @property
    def pending(self) -> int:
        """Entries and claim releases waiting for the next ``flush``."""
        return len(self._pending) + len(self._released)

    def count(self) -> int:
        """Stored answers (every stored entry is final)."""
        with self._guard("read"):
            return int(self._db.execute("SELECT count(*) FROM results").fetchone()[0])

    # ---- claims -----------------------------------------------------------------------------

    def claim(self, keys: Iterable[str], owner: str | None = None, ttl_s: float | None = None,
              *, now: float | None = None) -> set[str]:
        """Claim ``keys`` for ``owner`` until ``now + ttl_s``; return the keys granted.

        Granted: not answered yet (or answered, paid, and owed its re-ask: :func:`is_reask_due`), and
        not claimed by another owner whose claim is still live (an expired claim is taken over; the
        owner's own claims are renewed)."""
        return self.claim_owed(keys, owner, ttl_s, now=now)[0]

    def claim_owed(self, keys: Iterable[str], owner: str | None = None, ttl_s: float | None = None,
                   *, now: float | None = None) -> tuple[set[str], dict[str, JournalEntry]]:
        """:meth:`claim`, with the stored entries of the granted keys owed their re-ask, read in the
        same transaction: an answer another run journaled after this run looked its key up is
        re-asked from, not paid for again."""
        owner = owner or self.owner
        now = time.time() if now is None else now
        until = now + (self.claim_ttl_s if ttl_s is None else ttl_s)
        wanted = list(dict.fromkeys(keys))
        granted: set[str] = set()
        owed: dict[str, JournalEntry] = {}
        queued = self._queued()  # this process's answers, newer than what is committed
        with self._writing("claim in"):
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                due = dict(self._db.execute(f"SELECT key, {_REASK_DUE} FROM results WHERE key IN ({marks})", chunk))
                due.update((k, is_reask_due(queued[k])) for k in chunk if k in queued)
                held = {key for key, holder in self._db.execute(
                    f"SELECT key, owner FROM claims WHERE key IN ({marks}) AND owner != ? AND expires_at > ?",
                    [*chunk, owner, now]) if owner_alive(holder)}
                mine = [k for k in chunk if due.get(k, True) and k not in held]
                self._db.executemany("INSERT OR REPLACE INTO claims (key, owner, expires_at) VALUES (?, ?, ?)",
                                     [(k, owner, until) for k in mine])
                granted.update(mine)
                owed.update(lookup_entries(self._db, [k for k in mine if k in due and k not in queued]))
                owed.update((k, queued[k]) for k in mine if k in due and k in queued)
        return granted, owed

    def renew(self, owner: str | None = None, ttl_s: float | None = None, *, now: float | None = None) -> int:
        """Push the expiry of every claim ``owner`` holds to ``now + ttl_s``; return how many."""
        now = time.time() if now is None else now
        until = now + (self.claim_ttl_s if ttl_s is None else ttl_s)
        with self._writing("renew claims in"):
            cursor = self._db.execute("UPDATE claims SET expires_at = ? WHERE owner = ?", (until, owner or self.owner))
            return cursor.rowcount

    def announce(self) -> None:
        """Mark this owner as a run at work on the journal until it closes (the mark is a claim:
        renewed with the others, dropped with them, lapsing if the run dies), so ``prune`` leaves
        shrinking the file for later. Waits for the lock as the commands do: call it off the event loop."""
        with self._guard("claim in"), _transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO claims (key, owner, expires_at) VALUES (?, ?, ?)",
                             (RUN_MARK + self.owner, self.owner, time.time() + self.claim_ttl_s))

    def release(self, owner: str | None = None, keys: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims (all of them, or only ``keys``)."""
        owner = owner or self.owner
        with self._guard("release claims in"), _transaction(self._db):
            if keys is None:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self._db.executemany("DELETE FROM claims WHERE owner = ? AND key = ?", [(owner, k) for k in keys])

    # ---- operations -------------------------------------------------------------------------

    def stats(self) -> JournalStats:
        """Rows, size on disk and paid total, for operators."""
        with self._guard("read"):
            groups = self._db.execute(
                "SELECT o.task, r.status, count(*) FROM results r JOIN origins o ON o.id = r.origin "
                "GROUP BY o.task, r.status ORDER BY o.task, r.status").fetchall()
            rows, paid, oldest, newest = self._db.execute(
                "SELECT count(*), coalesce(sum(cost_cny), 0), min(paid_at), max(paid_at) FROM results").fetchone()
            claims = self._db.execute("SELECT count(*) FROM claims WHERE expires_at > ? AND key NOT LIKE ?",
                                      (time.time(), RUN_MARK + "%")).fetchone()
        size = sum(p.stat().st_size for p in _files_of(self.path) if p.exists())
        return JournalStats(self.path, size, int(rows), {(str(t), str(s)): int(n) for t, s, n in groups},
                            float(paid), oldest, newest, int(claims[0]))

    def prune(self, before: float, *, dry_run: bool = False) -> Pruned:
        """Delete answers paid before ``before`` (epoch seconds) and expired claims; say how many
        answers (would) go. Deletes a rowid range per transaction (pausing between them while a run
        uses the journal), so a run's commits wait at most one range. The file shrinks (VACUUM, which
        holds the lock throughout) only when no run is using the journal, never on ``dry_run``."""
        with self._guard("prune"):
            if dry_run:
                count = self._db.execute("SELECT count(*) FROM results WHERE paid_at < ?", (before,)).fetchone()[0]
                return Pruned(int(count), shrunk=False)
            gone = self._delete_paid_before(before, pause_s=PRUNE_PAUSE_S if self.in_use() else 0.0)
            with _transaction(self._db):
                self._db.execute("DELETE FROM claims WHERE expires_at <= ?", (time.time(),))
            if self.in_use():
                return Pruned(gone, shrunk=False)
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Pruned(gone, shrunk=True)

    def in_use(self) -> bool:
        """Whether a live run other than this owner is at work on the journal (its mark, or claims)."""
        owners = self._db.execute("SELECT DISTINCT owner FROM claims WHERE expires_at > ? AND owner != ?",
                                  (time.time(), self.owner)).fetchall()
        return any(owner_alive(owner) for (owner,) in owners)

    def _delete_paid_before(self, before: float, *, pause_s: float) -> int:
        """Delete, a rowid range per transaction, the answers paid before ``before``; return how many.
        (Older answers have the lower rowids: the ranges span only those, found by a read.)"""
        first, last = self._db.execute("SELECT min(rowid), max(rowid) FROM results WHERE paid_at < ?",
                                       (before,)).fetchone()
        if first is None:
            return 0
        gone = 0
        for low in range(int(first) - 1, int(last), PRUNE_BATCH):
            with _transaction(self._db):
                gone += self._db.execute("DELETE FROM results WHERE rowid > ? AND rowid <= ? AND paid_at < ?",
                                         (low, low + PRUNE_BATCH, before)).rowcount
            if pause_s:
                time.sleep(pause_s)
        return gone

    def entries(self, task: str) -> Iterator[JournalEntry]:
        """Every stored entry of ``task`` (for re-judging), read a batch at a time."""
        with self._guard("read"):
            cursor = self._db.execute(f"{_SELECT} WHERE o.task = ?", (task,))
            while batch := cursor.fetchmany(_LOOKUP_CHUNK):
                yield from (_entry_from_row(row) for row in batch)

    def replace_verdicts(self, entries: Sequence[JournalEntry]) -> None:
        """Store new verdicts for existing keys, keeping what they cost, when they were paid and which
        kind of endpoint gave them."""
        self._origins.clear()  # a failed earlier transaction may have left ids that are not in the file
        with self._guard("commit to"), _transaction(self._db):
            kinds = {key: e.endpoint_kind for key, e in lookup_entries(self._db, [e.key for e in entries]).items()}
            self._db.executemany(
                "UPDATE results SET status = ?, data = ?, answer = ?, error_code = ?, error_message = ?, origin = ? "
                "WHERE key = ?",
                [(e.status, _pack(e.data_json), _pack(_kept_answer(e.answer, e.data_json)), e.error_code,
                  e.error_message, self._origin(e.task, e.schema_id, e.model, kinds.get(e.key) or UNKNOWN), e.key)
                 for e in entries])

    # ---- internals --------------------------------------------------------------------------

    def _row_of(self, entry: JournalEntry, raw: bytes | None, now: float) -> tuple[object, ...]:
        answer = _kept_answer(entry.answer if entry.answer is not None else answer_text(raw), entry.data_json)
        return (entry.key, entry.status, _pack(entry.data_json), _pack(answer), entry.error_code,
                entry.error_message, entry.attempts, entry.reasks, entry.prompt_tokens, entry.completion_tokens,
                entry.cost_cny, entry.latency_ms, entry.finish_reason, entry.request_id,
                self._origin(entry.task, entry.schema_id, entry.model, entry.endpoint_kind or self.endpoint),
                entry.paid_at or now, entry.counted_prompt)

    def _origin(self, task: str | None, schema_id: str | None, model: str | None, endpoint: str) -> int:
        """The id of a (task, schema, model, endpoint kind), stored once rather than on every row."""
        origin = (task, schema_id, model, endpoint)
        found = self._origins.get(origin)
        if found is None:
            found = self._origins[origin] = origin_id(self._db, origin)
        return found

    def _guard(self, doing: str) -> _Guard:
        return _Guard(self.path, doing)

    @contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """A write transaction waiting at most ``write_wait_s`` for the lock. A run's journal (a short
        wait) refused the lock does not ask SQLite again before a pause that doubles while the lock
        stays held (:data:`BUSY_PAUSE_S`): it raises :class:`JournalBusy` at once meanwhile."""
        patient = self.write_wait_s >= LOCK_WAIT_S
        if not patient and time.monotonic() < self._busy_until:
            raise JournalBusy(f"journal {self.path} is locked by another process; trying again shortly")
        try:
            with self._guard(doing), _transaction(self._db, wait_s=self.write_wait_s):
                yield
        except JournalBusy:
            if not patient:
                self._busy_pause = min(max(2 * self._busy_pause, BUSY_PAUSE_S[0]), BUSY_PAUSE_S[1])
                self._busy_until = time.monotonic() + self._busy_pause
            raise
        self._busy_pause = 0.0


class _Guard:
    """Turn any SQLite error into one line naming the journal file and what to do."""

    def __init__(self, path: Path, doing: str) -> None:
        self._path, self._doing = path, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, JournalError):
            return
        if isinstance(exc, sqlite3.Error | OSError | zlib.error | UnicodeDecodeError | ValueError):
            raise _explain(self._path, self._doing, exc) from None


def _explain(path: Path, doing: str, exc: BaseException) -> JournalError:
    reason = first_line(exc)
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered or "unable to open" in lowered \
            or "not permitted" in lowered or "disk i/o" in lowered:
        return JournalError(f"journal {path} is not writable ({reason}): make the file and its folder "
                            "writable, or pass --journal with a writable path")
    if "full" in lowered:
        return JournalError(f"journal {path}: the disk is full ({reason}); free space and rerun "
                            "(answers already committed are kept)")
    if is_busy(exc):
        return JournalBusy(f"journal {path} is locked by another process ({reason}); rerun when it is free")
    return JournalError(f"journal {path} is corrupt or not a glm-extract journal ({reason}): {_WHAT_TO_DO}")


def is_busy(exc: BaseException) -> bool:
    """SQLite could not get a lock another connection holds."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    lowered = first_line(exc).lower()
    return "locked" in lowered or "busy" in lowered


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"journal {path}: its folder cannot be created ({exc.strerror or exc}): "
                           "pass --journal with a writable path") from None
    if path.exists() and not path.is_file():
        raise JournalError(f"journal {path} is not a file: pass --journal with a file path")
    try:
        db = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _explain(path, "open", exc) from None
    return db


def _prepare(db: sqlite3.Connection, path: Path) -> bool:
    """Check the file is a journal, migrate it, and prove it writable (a write in a transaction).
    True if it was migrated."""
    db.execute(f"PRAGMA busy_timeout={_ms(LOCK_WAIT_S)}")
    _use_wal(db)
    db.execute("PRAGMA synchronous=NORMAL")
    migrated = False
    with _transaction(db):  # taking the write lock is itself the writability check
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and "results" in tables:
            _check_columns(db, path, _V1_COLUMNS)
            _migrate_v1(db)
            migrated = True
        elif version == PREVIOUS_VERSION:
            _check_columns(db, path, _V2_COLUMN_NAMES)
            _migrate_v2(db)  # nothing to give back to the disk: no VACUUM
        elif version == SCHEMA_VERSION and "results" in tables:
            _add_counted_prompt(db)  # a version 3 written before the column was added
        elif version == 0 and tables:
            raise JournalError(f"journal {path} holds other tables ({', '.join(sorted(tables))}), "
                               f"not a glm-extract journal: {_WHAT_TO_DO}")
        elif version > SCHEMA_VERSION:
            raise JournalError(f"journal {path} has version {version}, newer than this glm-extract understands "
                               f"({SCHEMA_VERSION}): upgrade glm-extract or pass --journal NEW_PATH")
        for statement in _SCHEMA:
            db.execute(statement)
        _check_columns(db, path, _COLUMN_NAMES)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('last_opened', ?)", (str(time.time()),))
    return migrated


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting up to :data:`LOCK_WAIT_S` for a lock another process holds.
    SQLite does not call its busy handler for this switch: two runs creating a journal at once had
    the second stop at once with "database is locked"."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        _pause(WAL_RETRY_S)


_pause = time.sleep  # between tries of the switch to WAL (a test notes it)


def _check_columns(db: sqlite3.Connection, path: Path, expected: Sequence[str]) -> None:
    have = {r[1] for r in db.execute("PRAGMA table_info(results)")}
    missing = [c for c in expected if c not in have]
    if missing:
        raise JournalError(f"journal {path}: table 'results' lacks column(s) {', '.join(missing)}: {_WHAT_TO_DO}")


_V1_COLUMNS = ("key", "status", "final", "data_json", "error_code", "error_message", "attempts", "reasks",
               "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "model", "request_id",
               "task", "schema_id", "created_at")


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Version 1 → 2, inside the caller's transaction: compress answers, keep only final verdicts,
    store (task, schema, model) once, keep the answer text only where the parse does not say it all.
    What an answer cost was not recorded in version 1 (``cost_cny`` stays NULL: priced at read time)."""
    db.execute("ALTER TABLE results RENAME TO results_v1")
    db.execute(_RESULTS)
    for statement in _SCHEMA[1:]:
        db.execute(statement)
    origins: dict[tuple[str | None, str | None, str | None, str], int] = {}
    has_raw = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'raw_answers'").fetchone() is not None
    raw_join = "LEFT JOIN raw_answers a ON a.key = r.key" if has_raw else ""
    raw_col = "a.body" if has_raw else "NULL"
    cursor = db.execute(
        f"SELECT r.key, r.status, r.data_json, {raw_col}, r.error_code, r.error_message, r.attempts, r.reasks, "
        "r.prompt_tokens, r.completion_tokens, r.latency_ms, r.finish_reason, r.request_id, r.task, r.schema_id, "
        f"r.model, r.created_at FROM results_v1 r {raw_join} WHERE r.final = 1")
    while batch := cursor.fetchmany(2000):
        rows = []
        for (key, status, data_json, body, code, message, attempts, reasks, prompt, completion, latency, finish,
             request_id, task, schema, model, created) in batch:
            origin = (task, schema, model, UNKNOWN)  # which endpoint answered was not recorded
            if origin not in origins:
                origins[origin] = origin_id(db, origin)
            answer = _kept_answer(answer_text(bytes(body) if body is not None else None), data_json)
            rows.append((key, status, _pack(data_json), _pack(answer), code, message, attempts, reasks, prompt,
                         completion, None, latency, finish, request_id, origins[origin], created, 0))
        db.executemany(f"INSERT OR REPLACE INTO results ({_COLUMNS}) VALUES ({_MARKS})", rows)
    db.execute("DROP TABLE results_v1")
    if has_raw:
        db.execute("DROP TABLE raw_answers")


def _migrate_v2(db: sqlite3.Connection) -> None:
    """Version 2 → 3, inside the caller's transaction: ``origins`` gains ``endpoint`` (which kind of
    endpoint gave the answer), :data:`UNKNOWN` for every answer already stored: version 2 kept that only
    inside the request key, a one-way hash of the request, so it cannot be recovered; an unknown answer
    is reused as before (by its key) but never learnt from across rows. ``results`` keeps its rows and
    ``origin`` ids, gains ``counted_prompt`` (0: not counted) and an index on ``origin``."""
    _add_counted_prompt(db)
    db.execute(_ORIGINS.format(name="origins_v3"))
    db.execute("INSERT INTO origins_v3 (id, task, schema_id, model) SELECT id, task, schema_id, model FROM origins")
    db.execute("DROP TABLE origins")  # then renamed into its place: ``results`` still names ``origins``
    db.execute("ALTER TABLE origins_v3 RENAME TO origins")


def _add_counted_prompt(db: sqlite3.Connection) -> None:
    """``results.counted_prompt`` (0: not counted), if the table lacks it."""
    if "counted_prompt" not in {row[1] for row in db.execute("PRAGMA table_info(results)")}:
        db.execute("ALTER TABLE results ADD COLUMN counted_prompt INTEGER NOT NULL DEFAULT 0")


def origin_id(db: sqlite3.Connection, origin: tuple[str | None, str | None, str | None, str]) -> int:
    """The id of (task, schema, model, endpoint kind) in ``origins``, added when new."""
    db.execute("INSERT OR IGNORE INTO origins (task, schema_id, model, endpoint) VALUES (?, ?, ?, ?)", origin)
    row = db.execute("SELECT id FROM origins WHERE task IS ? AND schema_id IS ? AND model IS ? AND endpoint = ?",
                     origin).fetchone()
    return int(row[0])


def recent_answers(db: sqlite3.Connection, task: str, model: str, endpoint: str, limit: int) -> list[PastAnswer]:
    """The newest ``limit`` stored answers (by commit: rowid) of ``task`` by ``model`` from ``endpoint``
    (a kind; any schema of the task), newest first. Reads at most ``limit`` rows per schema the task
    has had, through the ``origin`` index: bounded whatever the journal's size."""
    ids = [int(row[0]) for row in db.execute("SELECT id FROM origins WHERE task = ? AND model = ? AND endpoint = ?",
                                             (task, model, endpoint))]
    rows: list[Any] = []
    for origin in ids:
        rows += db.execute(
            "SELECT rowid, key, status, error_code, attempts, reasks, prompt_tokens, completion_tokens, request_id, "
            "counted_prompt FROM results WHERE origin = ? ORDER BY rowid DESC LIMIT ?", (origin, limit)).fetchall()
    rows.sort(key=lambda row: int(row[0]), reverse=True)
    return [PastAnswer(*row[1:]) for row in rows[:limit]]


def answer_text(raw: bytes | None) -> str | None:
    """The answer text (message content, or the tool call's arguments) of a completion body."""
    if raw is None:
        return None
    try:
        message = orjson.loads(raw)["choices"][0].get("message") or {}
        calls = message.get("tool_calls") or []
        value = (calls[0].get("function") or {}).get("arguments") if calls else message.get("content")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return raw.decode("utf-8", errors="replace")
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _kept_answer(answer: str | None, data_json: str | None) -> str | None:
    """The answer text worth storing: none when the parsed answer says it all."""
    if answer is not None and data_json is not None and (answer == data_json or _same_answer(answer, data_json)):
        return None
    return answer


def _same_answer(answer: str, data_json: str) -> bool:
    try:
        return bool(orjson.loads(answer) == orjson.loads(data_json))
    except orjson.JSONDecodeError:
        return False


_WBITS = -12  # raw deflate (no header), 4 KB window: a third of the CPU of the default 32 KB window


def _pack(text: str | None) -> bytes | None:
    return None if text is None else zlib.compress(text.encode(), 6, wbits=_WBITS)


def _unpack(blob: bytes | None) -> str | None:
    return None if blob is None else zlib.decompress(blob, wbits=-15).decode()


def _files_of(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an error); ``wait_s``: how long to wait for
    the write lock when it is not the connection's usual :data:`LOCK_WAIT_S`."""

    def __init__(self, db: sqlite3.Connection, *, wait_s: float = LOCK_WAIT_S) -> None:
        self._db = db
        self._wait_ms = _ms(wait_s) if wait_s != LOCK_WAIT_S else None

    def __enter__(self) -> None:
        if self._wait_ms is None:
            self._db.execute("BEGIN IMMEDIATE")
            return
        self._db.execute(f"PRAGMA busy_timeout={self._wait_ms}")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        finally:
            self._db.execute(f"PRAGMA busy_timeout={_ms(LOCK_WAIT_S)}")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        else:
            self._db.execute("COMMIT")


_V2_COLUMN_NAMES = ("key", "status", "data", "answer", "error_code", "error_message", "attempts", "reasks",
                    "prompt_tokens", "completion_tokens", "cost_cny", "latency_ms", "finish_reason", "request_id",
                    "origin", "paid_at")
_COLUMN_NAMES = (*_V2_COLUMN_NAMES, "counted_prompt")
_COLUMNS = ", ".join(_COLUMN_NAMES)
_MARKS = ",".join("?" * len(_COLUMN_NAMES))


def _select(endpoint: str, counted: str) -> str:
    return ("SELECT r.key, r.status, r.data, r.answer, r.error_code, r.error_message, r.attempts, r.reasks, "
            "r.prompt_tokens, r.completion_tokens, r.cost_cny, r.latency_ms, r.finish_reason, r.request_id, "
            f"o.task, o.schema_id, o.model, r.paid_at, {endpoint}, {counted} "
            "FROM results r JOIN origins o ON o.id = r.origin")


_SELECT = _select("o.endpoint", "r.counted_prompt")
_SELECT_V2 = _select(f"'{UNKNOWN}'", "0")  # a version-2 journal read as it is (JournalReader): no kinds, no counts


def lookup_entries(db: sqlite3.Connection, keys: Sequence[str], *, version: int = SCHEMA_VERSION
                   ) -> dict[str, JournalEntry]:
    """The stored entries of ``keys`` (distinct) in ``db`` (a journal of ``version``: the current one or
    :data:`PREVIOUS_VERSION`), read in chunks; SQLite errors propagate."""
    select = _SELECT if version == SCHEMA_VERSION else _SELECT_V2
    found: dict[str, JournalEntry] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        rows = db.execute(f"{select} WHERE r.key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        found.update((row[0], _entry_from_row(row)) for row in rows)
    return found


def _entry_from_row(row: Any) -> JournalEntry:
    (key, status, data, answer, code, message, attempts, reasks, prompt, completion, cost, latency, finish,
     request_id, task, schema_id, model, paid_at, endpoint, counted) = row
    return JournalEntry(
        key=key, status=status, final=True, data_json=_unpack(data), error_code=code, error_message=message,
        attempts=attempts, reasks=reasks, prompt_tokens=prompt, completion_tokens=completion, latency_ms=latency,
        finish_reason=finish, model=model, request_id=request_id, task=task, schema_id=schema_id, cost_cny=cost,
        answer=_unpack(answer), paid_at=paid_at, endpoint_kind=endpoint, counted_prompt=counted,
    )
