"""Which stored rows a merge keeps rather than overwrite (pure): answers before gaps, newer before older.

A row of the warehouse is the *current* answer for a document. An export of a run that could not
afford the document (``skipped``/``budget_reached``), timed out (``failed``) or got no valid answer
(``invalid``) has no answer to give, and an output of an older run exported after a newer one (a
backfill, a retried flow step) has an outdated one. So a matched row is replaced only when the
incoming row ranks at least as high as the stored one, by

1. ``_status = 'ok'`` first: an ``ok`` row is never replaced by a row that is not ``ok``
   (kept as ``ok``), and a row that is not ``ok`` is always replaced by an ``ok`` one;
2. then the run: between rows of the same kind, a row of an older run never replaces a row of a
   newer one (kept as ``newer``). Runs rank by start; a run whose start is unknown ranks below every
   known one; equal or unknown starts (two runs in one second) rank by run id; the same run replaces.

This is an order: whichever order the outputs are exported in, the table ends the same. A run's
start is the time its id begins with (``20261126T140000Z-…``, ``runner.new_run_id``), else its
``runs.started_at``. ``replace`` (the export's ``--replace``) turns the rule off and the last export
wins, as before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from pipeline.warehouse.source import RUN_ID_COLUMN
from pipeline.warehouse.sql import quote_ident
from pipeline.wording import plural

STATUS_COLUMN = "_status"
KEPT_OK = "ok"
KEPT_NEWER = "newer"
RUN_STARTS_SCHEMA = pa.schema([pa.field("run_id", pa.string()), pa.field("started_at", pa.timestamp("us", tz="UTC"))])
_STAMP = re.compile(r"(\d{8}T\d{6}Z)-")


@dataclass(frozen=True)
class Kept:
    """Matched rows left as they were stored, by reason."""

    ok: int = 0  # a stored ok answer against an incoming row that is not ok
    newer: int = 0  # a stored row of a newer run against one of the same kind from an older run

    @property
    def total(self) -> int:
        return self.ok + self.newer

    def describe(self) -> str:
        """``kept 55 stored ok answers over rows that are not ok, 2 rows of a newer run (…)``; '' if none."""
        if not self.total:
            return ""
        parts = [f"{plural(self.ok, 'stored ok answer')} over rows that are not ok"] if self.ok else []
        parts += [f"{plural(self.newer, 'row')} of a newer run over an older run's"] if self.newer else []
        return f"kept {', '.join(parts)} (export --replace overwrites them)"


def run_start(run_id: str, started_at: dt.datetime | None = None) -> dt.datetime | None:
    """When run ``run_id`` started: the timestamp its id begins with, else ``started_at``, else None."""
    found = _STAMP.match(run_id)
    if found:
        try:
            return dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    if started_at is not None and started_at.tzinfo is None:
        return started_at.replace(tzinfo=dt.UTC)
    return started_at


def run_starts(run_ids: Iterable[str], recorded: Mapping[str, dt.datetime | None]) -> pa.Table:
    """The known start of each run id (``recorded``: ``runs.started_at`` by run id), as a small table."""
    starts = {run_id: run_start(run_id, recorded.get(run_id)) for run_id in set(run_ids)}
    rows = [{"run_id": r, "started_at": s} for r, s in sorted(starts.items()) if s is not None]
    return pa.Table.from_pylist(rows, schema=RUN_STARTS_SCHEMA)


def keep_reason(columns: Collection[str], *, stored: str, incoming: str, starts: str) -> str | None:
    """A SQL ``CASE`` giving ``'ok'``/``'newer'`` for a matched row to keep, NULL to write; None: never keep.

    ``stored`` and ``incoming`` are the two rows' aliases with their dot (``t.``, ``EXCLUDED.``),
    ``starts`` the relation holding :func:`run_starts`. Only the columns the export brings are
    compared (a table without ``_status`` is compared by time only)."""
    status = STATUS_COLUMN in columns
    timed = RUN_ID_COLUMN in columns
    if not (status or timed):
        return None
    whens: list[str] = []
    same_kind = "TRUE"
    if status:
        stored_ok, incoming_ok = _is_ok(stored), _is_ok(incoming)
        whens.append(f"WHEN {stored_ok} AND NOT {incoming_ok} THEN '{KEPT_OK}'")
        same_kind = f"{stored_ok} = {incoming_ok}"
    if timed:
        whens.append(f"WHEN {same_kind} AND {_older(incoming, stored, starts)} THEN '{KEPT_NEWER}'")
    return f"(CASE {' '.join(whens)} END)"


def _older(incoming: str, stored: str, starts: str) -> str:
    """The incoming row's run ranks below the stored row's: a total order, so the table does not depend
    on the export order. By start; a run whose start is unknown ranks below every known one; equal or
    unknown starts (two runs in one second) by run id. The same run is not older than itself."""
    s_in, s_st = _start(incoming, starts), _start(stored, starts)
    r_in, r_st = _run_id(incoming), _run_id(stored)
    return (f"(({s_in} IS NULL AND {s_st} IS NOT NULL) OR {s_in} < {s_st} "
            f"OR ({s_in} IS NOT DISTINCT FROM {s_st} AND {r_in} < {r_st}))")


def _is_ok(alias: str) -> str:
    return f"({alias}{quote_ident(STATUS_COLUMN)} IS NOT DISTINCT FROM '{KEPT_OK}')"


def _run_id(alias: str) -> str:
    return f"CAST({alias}{quote_ident(RUN_ID_COLUMN)} AS VARCHAR)"


def _start(alias: str, starts: str) -> str:
    return f"(SELECT r.started_at FROM {starts} AS r WHERE r.run_id = {_run_id(alias)})"
