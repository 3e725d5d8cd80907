"""A re-ask that was sent but never answered (only 429s until the retries ran out, or a budget that
refused its retry) does not use up a ``--max-reasks`` slot: the row stays owed that re-ask, and the
rerun sends it (a 429 is not paid, and the model never answered it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from tests.fakes import FakeGLM, completion, glm_error
from tests.test_budget_reasks import one_row
from tests.test_owed_reasks import TEXTS, bad_first_then, documents, stored
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name


def test_a_reask_that_only_got_429s_is_sent_by_the_rerun(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    refusing = FakeGLM(default=bad_first_then(lambda body: glm_error(429, "1302", "busy")))
    first = run(workspace, refusing, concurrency=3, shard_size=100, max_reasks=1, max_attempts=2)
    assert first.requests.reasks == len(TEXTS)  # each row's re-ask went on the wire ...
    assert all(entry.error_code == "reask_unanswered" for entry in stored(workspace).values())  # ... unanswered

    answering = FakeGLM(default=bad_first_then(good))
    run(workspace, answering, concurrency=3, shard_size=100, max_reasks=1, max_attempts=2, output="again.parquet")
    assert not documents(answering.requests, first=True)  # no first request paid twice
    assert sorted(documents(answering.requests, first=False)) == sorted(TEXTS)  # the owed re-asks, sent
    out = pl.read_parquet(workspace / "again.parquet")
    assert out["_status"].to_list() == ["ok"] * len(TEXTS), out["_error_message"].to_list()


def test_the_limit_counts_answered_reasks_only(workspace: Path) -> None:  # noqa: F811
    """First answer and first re-ask answered (and failing the schema), the second re-ask only 429s:
    one re-ask answered, so a rerun with ``--max-reasks 1`` sends nothing and one with 2 sends it."""
    one_row(workspace, TEXTS[:2])

    def second_reask_refused(body: dict[str, Any]) -> Any:
        turns = len(body["messages"])
        return glm_error(429, "1302", "busy") if turns > 4 else completion('{"name": 1}')

    run(workspace, FakeGLM(default=second_reask_refused), concurrency=2, shard_size=100, max_reasks=2,
        max_attempts=2)
    assert {(e.reasks, e.error_code) for e in stored(workspace).values()} == {(2, "reask_unanswered")}
    held = FakeGLM(default=bad_first_then(good))
    run(workspace, held, concurrency=2, shard_size=100, max_reasks=1, output="held.parquet")
    assert held.requests == []  # one re-ask was answered: --max-reasks 1 allows no more
    sent = FakeGLM(default=bad_first_then(good))
    run(workspace, sent, concurrency=2, shard_size=100, max_reasks=2, output="sent.parquet")
    assert len(sent.requests) == 2 and all(len(body["messages"]) == 4 for body in sent.requests)
    assert pl.read_parquet(workspace / "sent.parquet")["_status"].to_list() == ["ok", "ok"]


def test_a_reask_unanswered_in_two_runs_is_still_sent_by_the_third(workspace: Path) -> None:  # noqa: F811
    """Each run's resend of the same owed re-ask is that re-ask again, not one more: two runs whose
    re-asks only got 429s leave the row owed one re-ask, and ``--max-reasks 1`` still sends it."""
    one_row(workspace, TEXTS[:1])
    for output in ("o1.parquet", "o2.parquet"):
        refusing = FakeGLM(default=bad_first_then(lambda body: glm_error(429, "1302", "busy")))
        run(workspace, refusing, concurrency=1, shard_size=100, max_reasks=1, max_attempts=2, output=output)
    assert {(e.reasks, e.error_code) for e in stored(workspace).values()} == {(1, "reask_unanswered")}
    answering = FakeGLM(default=bad_first_then(good))
    run(workspace, answering, concurrency=1, shard_size=100, max_reasks=1, output="o3.parquet")
    assert len(answering.requests) == 1 and len(answering.requests[0]["messages"]) == 4  # the re-ask
    out = pl.read_parquet(workspace / "o3.parquet")
    assert out["_status"].to_list() == ["ok"] and out["_reasks"].to_list() == [1]
