"""The run books requests itself and takes rows from the shards that finished: the split of a shard's
tallies into the two must follow what :meth:`RunStats.note_rows` counts."""

from __future__ import annotations

from dataclasses import fields

from pipeline.runner import ROW_TALLIES, requests_part, rows_part
from pipeline.stats import RunStats
from pipeline.tables import RowMeta


def reused_failure() -> RowMeta:
    return RowMeta(status="failed", error_code="1301", error_message="filtered", attempts=1, reasks=0,
                   prompt_tokens=0, completion_tokens=0, cost_cny=0.0, latency_ms=None, finish_reason=None,
                   model=None, request_id=None, key="k", from_journal=True, data_json=None, paid_cost_cny=0.5)


def changed(stats: RunStats) -> set[str]:
    fresh = RunStats()
    return {f.name for f in fields(RunStats) if getattr(stats, f.name) != getattr(fresh, f.name)}


def test_the_row_tallies_are_exactly_what_note_rows_counts() -> None:
    stats = RunStats()
    stats.note_rows(["r1"], [reused_failure()])
    assert changed(stats) == set(ROW_TALLIES)


def test_a_shard_splits_into_its_requests_and_its_rows() -> None:
    stats = RunStats()
    stats.note_answer(120.0, 100, 20, 0.25)
    stats.note_rows(["r1"], [reused_failure()])
    requests, rows = requests_part(stats), rows_part(stats)
    assert changed(requests).isdisjoint(ROW_TALLIES) and changed(rows) == set(ROW_TALLIES)
    whole = RunStats()
    whole.merge(requests)
    whole.merge(rows)
    assert changed(whole) == changed(stats) and whole.cost_cny == 0.25 and whole.answers_cost_cny == 0.5
