"""A stopped run does not pay again for answers it already bought.

An answer that fails the schema is journaled as soon as it is judged, owed its re-ask
(``invalid``/``reask_pending``), so a run stopped while rows wait for (or are sending) their re-asks
leaves them in the journal and the rerun sends only the re-asks. A pack's usable records are
journaled as soon as the pack is judged, and a row it gave nothing usable for is journaled as owed
its request alone. ``--max-reasks 0`` sends no owed re-ask. Re-asks go before new first requests at
the concurrency limiter.

The stop is what SIGTERM and Ctrl-C do to a run (a cancellation of the run's task), or the run's
own stop signal (a fatal error)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.commands.estimate import estimate_input
from pipeline.errors import RunAborted
from pipeline.glm.client import Endpoint
from pipeline.journal import Journal, JournalEntry, is_reask_due
from pipeline.limiter import AdaptiveLimiter, paid_rows_first
from pipeline.rejudge import rejudge_journal
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from pipeline.tasks import load_task
from tests.fakes import HANG, FakeGLM, _Hang, completion, document_of, glm_error
from tests.test_budget_reasks import MAX_TOKENS, cny, first_prompt_tokens, one_row, wrong_first
from tests.test_packing_reask_cost import leaves_the_last_record_out, packing_task  # noqa: F401 - fixture
from tests.test_runner import TARGET, good, run, settings, workspace  # noqa: F401 - the fixture is used by name

TEXTS = [f"document number {n}" for n in range(6)]
CAP = 3


def is_first(body: dict[str, Any]) -> bool:
    return len(body["messages"]) == 2


def bad_first_then(reask_reply: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """Every first answer fails the schema; re-asks get ``reask_reply``."""
    def reply(body: dict[str, Any]) -> Any:
        return completion('{"name": 1}') if is_first(body) else reask_reply(body)
    return reply


def hang_after(count: int, seen: asyncio.Event) -> Callable[[dict[str, Any]], _Hang]:
    """A reply that hangs; ``seen`` is set once ``count`` requests hang."""
    hung: list[int] = []

    def reply(body: dict[str, Any]) -> _Hang:
        hung.append(1)
        if len(hung) == count:
            seen.set()
        return HANG
    return reply


async def _run_until(ws: Path, fake: FakeGLM, stop_when: asyncio.Event, task: str, **extra: Any) -> None:
    """A run cancelled (what SIGTERM and Ctrl-C do) once ``stop_when`` is set."""
    async with fake.transport() as transport:
        base = settings(ws, **extra) if task == "mini" else Settings(schemas_dir=ws / "schemas",
                                                                      journal_path=ws / "journal.sqlite", **extra)
        request = RunRequest(task, str(ws / "in.parquet"), ws / "out.parquet")
        running = asyncio.create_task(run_extraction(request, base, TARGET, transport=transport))
        waiting = asyncio.create_task(stop_when.wait())
        done, _ = await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        assert waiting in done, f"the run ended before it was stopped: {running.result()}"
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


def stopped_run(ws: Path, fake_for: Callable[[asyncio.Event], FakeGLM], task: str = "mini", **extra: Any) -> FakeGLM:
    async def go() -> FakeGLM:
        seen = asyncio.Event()
        fake = fake_for(seen)
        await _run_until(ws, fake, seen, task, **extra)
        return fake
    return asyncio.run(go())


def stored(ws: Path) -> dict[str, JournalEntry]:
    """Every entry the journal holds (of any task)."""
    with Journal(ws / "journal.sqlite") as journal:
        tasks = {task for task, _ in journal.stats().by_task_status}
        return {entry.key: entry for task in tasks for entry in journal.entries(task)}


def documents(bodies: list[dict[str, Any]], *, first: bool) -> list[str]:
    return [document_of(body) for body in bodies if is_first(body) == first]


def test_a_run_cancelled_while_rows_wait_for_reasks_keeps_their_answers(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    stopped = stopped_run(workspace, lambda seen: FakeGLM(default=bad_first_then(hang_after(CAP, seen))),
                          concurrency=CAP, shard_size=100)
    paid = documents(stopped.answered, first=True)
    assert paid  # answers were bought before the stop
    entries = stored(workspace)
    assert len(entries) == len(paid)
    assert {(e.status, e.error_code) for e in entries.values()} == {("invalid", "reask_pending")}
    assert all(is_reask_due(e) for e in entries.values())
    assert all("kept" in (e.error_message or "") and e.answer == '{"name": 1}' for e in entries.values())

    rerun = FakeGLM(default=bad_first_then(good))
    summary = run(workspace, rerun, concurrency=CAP, shard_size=100, output="again.parquet")
    assert not set(documents(rerun.requests, first=True)) & set(paid)  # no first request paid twice
    assert sorted(documents(rerun.requests, first=False)) == sorted(TEXTS)  # every row's re-ask, once
    out = pl.read_parquet(workspace / "again.parquet")
    assert out["_status"].to_list() == ["ok"] * len(TEXTS)
    assert summary.cost_cny == pytest.approx(out["_cost_cny"].sum(), abs=1e-6)
    assert summary.requests.sent == out["_attempts"].sum() == len(rerun.requests)
    assert {e.status for e in stored(workspace).values()} == {"ok"}  # the final verdicts replaced the owed ones


def test_a_run_stopped_by_a_fatal_error_while_rows_wait_for_reasks_keeps_their_answers(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    fake = FakeGLM(default=bad_first_then(lambda body: glm_error(429, "1113", "no balance")))
    with pytest.raises(RunAborted):
        run(workspace, fake, concurrency=CAP, shard_size=100)
    paid = documents(fake.answered, first=True)
    entries = stored(workspace)
    assert paid and len(entries) == len(paid)
    # owed their re-ask: not sent yet when the fatal answer came (pending), or sent and never answered
    assert {(e.status, e.error_code) for e in entries.values()} <= {("invalid", "reask_pending"),
                                                                     ("invalid", "reask_unanswered")}
    assert not any("not answered" in (e.error_message or "") for e in entries.values())

    rerun = FakeGLM(default=bad_first_then(good))
    run(workspace, rerun, concurrency=CAP, shard_size=100, output="again.parquet")
    assert not set(documents(rerun.requests, first=True)) & set(paid)
    assert pl.read_parquet(workspace / "again.parquet")["_status"].to_list() == ["ok"] * len(TEXTS)


def test_owed_answers_are_kept_by_rejudge_and_counted_as_requests_by_the_estimate(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    stopped = stopped_run(workspace, lambda seen: FakeGLM(default=bad_first_then(hang_after(CAP, seen))),
                          concurrency=CAP, shard_size=100)
    owed = len(documents(stopped.answered, first=True))
    with Journal(workspace / "journal.sqlite") as journal:
        rejudge_journal(journal, load_task("mini", workspace / "schemas"))
        after = list(journal.entries("mini"))
        by_status = journal.stats().by_task_status
    assert {(e.status, e.error_code) for e in after} == {("invalid", "reask_pending")}
    assert by_status == {("mini", "invalid"): owed}  # shown as budget_reached ones are
    real = settings(workspace, base_url="http://127.0.0.1:9/api/paas/v4")  # nothing listens
    found = estimate_input("mini", str(workspace / "in.parquet"), real, {})
    assert (found.requests, found.from_journal) == (len(TEXTS), 0)


def test_a_packed_run_cancelled_after_its_pack_was_answered_keeps_the_packs_records(packing_task: Path) -> None:  # noqa: F811
    def fake_for(seen: asyncio.Event) -> FakeGLM:
        hang = hang_after(1, seen)
        return FakeGLM(default=lambda body: leaves_the_last_record_out(body) if '<item id="' in
                       body["messages"][1]["content"] else hang(body))

    stopped_run(packing_task, fake_for, task="names")
    entries = sorted(stored(packing_task).values(), key=lambda e: e.status)
    assert [(e.status, e.error_code) for e in entries] == [("invalid", "reask_pending"), ("ok", None), ("ok", None)]
    assert entries[0].request_id is None and (entries[0].cost_cny or 0) > 0  # its share of the pack, owed alone

    rerun = FakeGLM(default=leaves_the_last_record_out)
    run_names(packing_task, rerun)
    assert [document_of(body) for body in rerun.requests] == ["Cy wrote"]  # no pack again: r3 alone
    rows = pl.read_parquet(packing_task / "again.parquet").sort("id")
    assert rows["_status"].to_list() == ["ok", "ok", "ok"] and rows["_cost_cny"].to_list()[:2] == [0, 0]
    assert rows["_reasks"].to_list() == [0, 0, 1]


def run_names(ws: Path, fake: FakeGLM, **extra: Any) -> None:
    async def go() -> None:
        async with fake.transport() as transport:
            base = Settings(schemas_dir=ws / "schemas", journal_path=ws / "journal.sqlite", **extra)
            request = RunRequest("names", str(ws / "in.parquet"), ws / "again.parquet")
            await run_extraction(request, base, Target(Endpoint("http://glm.test/api/paas/v4"), "custom"),
                                 transport=transport)
    asyncio.run(go())


def test_max_reasks_0_sends_no_owed_reask_and_leaves_it_owed(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    budget = cny(round(first_prompt_tokens(workspace) * 1.25) + MAX_TOKENS + 5)  # no room for the re-ask
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    none = FakeGLM(default=wrong_first)
    summary = run(workspace, none, concurrency=1, max_tokens=MAX_TOKENS, max_reasks=0, output="none.parquet")
    row = pl.read_parquet(workspace / "none.parquet").row(0, named=True)
    assert none.requests == [] and summary.requests.reasks == 0 and summary.cost_cny == 0
    assert (row["_status"], row["_error_code"]) == ("invalid", "schema_invalid")  # its stored answer's error
    assert row["_cost_cny"] == 0 and row["_reasks"] == 0
    assert [(e.status, e.error_code) for e in stored(workspace).values()] == [("invalid", "budget_reached")]

    later = FakeGLM(default=wrong_first)
    run(workspace, later, concurrency=1, max_tokens=MAX_TOKENS, output="later.parquet")
    assert len(later.requests) == 1 and not is_first(later.requests[0])  # still owed: the re-ask alone


def test_a_paid_rows_reask_takes_a_slot_before_new_rows_first_requests() -> None:
    async def scenario() -> list[str]:
        limiter = AdaptiveLimiter(1)
        await limiter.acquire()
        order: list[str] = []

        async def take(name: str, first: bool) -> None:
            if first:
                await limiter.acquire()
            else:
                with paid_rows_first():
                    await limiter.acquire()
            order.append(name)
            limiter.release()

        tasks = [asyncio.create_task(take("first 1", True)), asyncio.create_task(take("first 2", True))]
        queued = asyncio.Event()
        limiter.watch(queued.set)
        while limiter.waiting < 2:
            queued.clear()
            await queued.wait()
        tasks.append(asyncio.create_task(take("re-ask", False)))
        while limiter.waiting < 3:
            queued.clear()
            await queued.wait()
        limiter.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["re-ask", "first 1", "first 2"]


def test_reasks_go_out_before_the_rest_of_a_shards_first_requests(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS)
    fake = FakeGLM(default=bad_first_then(good))
    run(workspace, fake, concurrency=1, shard_size=100)
    kinds = ["first" if is_first(body) else "re-ask" for body in fake.requests]
    assert kinds.index("re-ask") < len(kinds) - 1 - kinds[::-1].index("first")  # not all first requests first


def test_an_owed_entry_never_goes_to_a_run_while_its_owner_sends_the_reask(tmp_path: Path) -> None:
    entry = JournalEntry(key="k", status="invalid", final=True, data_json=None, error_code="reask_pending",
                         error_message="owed", attempts=1, reasks=0, prompt_tokens=1, completion_tokens=1,
                         latency_ms=None, finish_reason="stop", model="m", request_id="r", task="t", schema_id="s")
    with Journal(tmp_path / "j.sqlite", owner="host:1:a") as mine, Journal(tmp_path / "j.sqlite",
                                                                            owner="host:2:b") as other:
        assert mine.claim(["k"]) == {"k"}
        mine.add(entry, orjson.dumps({"x": 1}))
        mine.flush()
        assert other.claim(["k"]) == set()  # the owner still holds it: it is sending the re-ask
        mine.release()
        assert other.claim(["k"]) == {"k"}  # owed, and nobody is sending it: granted (the re-ask)



def test_a_paid_row_whose_reask_runs_out_of_retries_says_its_answer_is_kept(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, TEXTS[:2])
    fake = FakeGLM(default=bad_first_then(lambda body: glm_error(500, "500", "server busy")))
    run(workspace, fake, concurrency=CAP, shard_size=100, max_attempts=2)
    out = pl.read_parquet(workspace / "out.parquet")
    assert out["_status"].to_list() == ["invalid", "invalid"]  # answered and paid, not "failed"
    assert out["_error_code"].to_list() == ["reask_unanswered", "reask_unanswered"]  # not counted as asked
    assert all("re-ask got no answer" in m and "kept in the journal" in m for m in out["_error_message"])
    rerun = FakeGLM(default=bad_first_then(good))
    run(workspace, rerun, concurrency=CAP, shard_size=100, output="again.parquet")
    assert documents(rerun.requests, first=True) == []  # only the re-asks
    assert pl.read_parquet(workspace / "again.parquet")["_status"].to_list() == ["ok", "ok"]
