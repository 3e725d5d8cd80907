"""A paid answer whose re-ask no longer fits the budget is kept, not thrown away.

The row ends ``invalid``/``budget_reached`` (it was sent and paid for, so it is not ``skipped``),
``requests.reasks`` counts only re-asks that were sent, and a later run with more budget sends only
the re-ask: the first request is never paid twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.budget import Budget, BudgetReached
from pipeline.glm.client import Endpoint
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from pipeline.tokens import count_prompt_tokens
from tests.fakes import FakeGLM, completion, document_of
from tests.test_packing_reask_cost import packing_task  # noqa: F401 - the fixture is used by name
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name

ANSWER_TOKENS = 20
MAX_TOKENS = 1000


def cny(tokens: int) -> float:
    return tokens * 0.5 / 1e6


def wrong_first(body: dict[str, Any]) -> Any:
    """The first answer to a document fails the schema; the answer to its re-ask is good."""
    prompt = count_prompt_tokens(body["messages"])
    if len(body["messages"]) == 2:
        return completion('{"name": 1}', prompt_tokens=prompt, completion_tokens=ANSWER_TOKENS)
    answer = orjson.loads(good(body).content)["choices"][0]["message"]["content"]
    return completion(answer, prompt_tokens=prompt, completion_tokens=ANSWER_TOKENS)


def one_row(ws: Path, texts: list[str]) -> None:
    pl.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "body": texts}).write_parquet(ws / "in.parquet")


def run_packed(ws: Path, fake: FakeGLM, journal: str = "journal.sqlite", output: str = "out.parquet",
               **extra: Any) -> RunSummary:
    """The packing task of tests/test_packing_reask_cost.py (three short rows, one pack)."""
    async def go() -> RunSummary:
        async with fake.transport() as transport:
            settings = Settings(schemas_dir=ws / "schemas", journal_path=ws / journal, concurrency=1, **extra)
            request = RunRequest("names", str(ws / "in.parquet"), ws / output)
            return await run_extraction(request, settings, Target(Endpoint("http://glm.test/api/paas/v4"), "custom"),
                                        transport=transport)
    return asyncio.run(go())


def first_prompt_tokens(ws: Path) -> int:
    """The first request's prompt by the rule of thumb (a run on a journal of its own)."""
    probe = FakeGLM(default=good)
    run(ws, probe, journal_path=ws / "probe.sqlite", output="probe.parquet")
    return count_prompt_tokens(probe.requests[0]["messages"])


def test_a_paid_answer_whose_reask_does_not_fit_is_kept_and_the_next_run_sends_only_the_reask(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    prompt = first_prompt_tokens(workspace)
    budget = cny(round(prompt * 1.25) + MAX_TOKENS + 5)  # the first request fits; its re-ask cannot
    first = FakeGLM(default=wrong_first)
    summary = run(workspace, first, concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    row = pl.read_parquet(workspace / "out.parquet").row(0, named=True)
    assert len(first.requests) == 1 and summary.requests.sent == 1
    assert summary.requests.reasks == 0 == row["_reasks"]  # the re-ask was never sent
    assert (row["_status"], row["_error_code"]) == ("invalid", "budget_reached")  # sent and paid: not skipped
    assert "re-ask was not sent" in row["_error_message"]
    assert row["_cost_cny"] == pytest.approx(cny(prompt + ANSWER_TOKENS))
    assert summary.cost_cny == pytest.approx(row["_cost_cny"], abs=1e-6)  # the summary rounds to 6 places
    assert summary.cost_cny <= budget

    second = FakeGLM(default=wrong_first)
    again = run(workspace, second, concurrency=1, max_tokens=MAX_TOKENS, output="again.parquet")
    row = pl.read_parquet(workspace / "again.parquet").row(0, named=True)
    assert len(second.requests) == 1 and len(second.requests[0]["messages"]) == 4  # only the re-ask
    assert document_of(second.requests[0]) == "hello world"
    assert row["_status"] == "ok" and row["name"] == "hello worl"
    reask_cost = cny(count_prompt_tokens(second.requests[0]["messages"]) + ANSWER_TOKENS)
    assert row["_cost_cny"] == pytest.approx(reask_cost)  # this run paid the re-ask only
    assert again.cost_cny == pytest.approx(reask_cost, abs=1e-6)
    assert row["_paid_cost_cny"] == pytest.approx(reask_cost + cny(prompt + ANSWER_TOKENS))
    assert (row["_attempts"], row["_reasks"]) == (1, 1) and again.requests.reasks == 1
    assert again.cost_split.reasks == pytest.approx(reask_cost, abs=1e-6)

    third = FakeGLM(default=wrong_first)
    run(workspace, third, max_tokens=MAX_TOKENS, output="third.parquet")
    assert third.requests == []  # the ok answer is final now


def test_a_run_still_short_of_budget_keeps_the_paid_answer_without_paying_it_again(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    prompt = first_prompt_tokens(workspace)
    budget = cny(round(prompt * 1.25) + MAX_TOKENS + 5)
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    again = FakeGLM(default=wrong_first)
    summary = run(workspace, again, concurrency=1, max_tokens=MAX_TOKENS, budget_cny=cny(10), output="again.parquet")
    row = pl.read_parquet(workspace / "again.parquet").row(0, named=True)
    assert again.requests == [] and summary.cost_cny == 0
    assert (row["_status"], row["_error_code"]) == ("invalid", "budget_reached")
    assert row["_cost_cny"] == 0 and row["_paid_cost_cny"] == pytest.approx(cny(prompt + ANSWER_TOKENS))


def packs_one_bad_record(body: dict[str, Any]) -> Any:
    """A pack's answer uses nearly all of its answer tokens and leaves out its last record; a
    request alone is answered well."""
    prompt = count_prompt_tokens(body["messages"])
    user = body["messages"][1]["content"]
    labels = [f"d{n}" for n in range(1, user.count('<item id="') + 1)]
    if not labels:
        return completion(orjson.dumps({"name": document_of(body)}).decode(), prompt_tokens=prompt,
                          completion_tokens=ANSWER_TOKENS)
    records = {item: {"name": f"record {item}"} for item in labels[:-1]}
    return completion(orjson.dumps(records).decode(), prompt_tokens=prompt, completion_tokens=body["max_tokens"] - 10)


def test_a_packed_row_whose_request_alone_does_not_fit_is_kept_and_asked_alone_next_run(packing_task: Path) -> None:  # noqa: F811
    probe = FakeGLM(default=packs_one_bad_record)
    run_packed(packing_task, probe, journal="probe.sqlite", output="probe.parquet")
    pack = probe.requests[0]
    budget = cny(round(count_prompt_tokens(pack["messages"]) * 1.25) + pack["max_tokens"] + 5)
    first = FakeGLM(default=packs_one_bad_record)
    summary = run_packed(packing_task, first, budget_cny=budget)
    rows = pl.read_parquet(packing_task / "out.parquet").sort("id")
    assert len(first.requests) == 1 and summary.requests.reasks == 0  # the pack only
    assert rows["_status"].to_list() == ["ok", "ok", "invalid"] and rows["_error_code"][2] == "budget_reached"
    assert "re-ask was not sent" in rows["_error_message"][2] and rows["_cost_cny"][2] > 0  # its share of the pack
    assert summary.cost_cny == pytest.approx(rows["_cost_cny"].sum(), abs=1e-6)

    second = FakeGLM(default=packs_one_bad_record)
    again = run_packed(packing_task, second, output="again.parquet")
    rows = pl.read_parquet(packing_task / "again.parquet").sort("id")
    assert len(second.requests) == 1 and document_of(second.requests[0]) == "Cy wrote"  # r3 alone, no pack again
    assert rows["_status"].to_list() == ["ok", "ok", "ok"] and rows["name"][2] == "Cy wrote"
    assert rows["_cost_cny"].to_list()[:2] == [0, 0] and again.requests.reasks == 1 == rows["_reasks"][2]
    assert again.cost_cny == pytest.approx(rows["_cost_cny"][2], abs=1e-6) and rows["_attempts"][2] == 1


def test_a_paid_rows_reask_goes_before_a_new_rows_first_request() -> None:
    async def scenario() -> None:
        budget = Budget()
        await budget.reserve(6, 10)  # a request on the wire

        async def waiting(task: asyncio.Task[float]) -> None:
            while not task.done() and len(budget._waiters) < expected:  # until it waits (a condition)
                await asyncio.sleep(0)

        expected = 1
        reask = asyncio.create_task(budget.reserve(5, 10, paid_row=True))  # 6 + 5 > 10: waits
        await waiting(reask)
        expected = 2
        fresh = asyncio.create_task(budget.reserve(3, 10))  # 6 + 3 fits, but a paid row's re-ask waits
        await waiting(fresh)
        assert not reask.done() and not fresh.done()
        budget.settle(6, 4)  # the answer cost 4: the re-ask fits (4 + 5), the new row's request no longer
        assert await reask == 5
        expected = 1
        await waiting(fresh)
        assert not fresh.done() and budget.reserved_cny == 5
        budget.settle(5, 5)  # 9 spent: 3 more can never fit
        with pytest.raises(BudgetReached):
            await fresh

    asyncio.run(scenario())


def test_rows_resumed_across_shards_still_add_up_to_the_summary(workspace: Path) -> None:  # noqa: F811
    texts = ["hello world", "second doc", "hello world", "third one", "second doc"]  # repeats in later shards
    one_row(workspace, texts)
    prompt = first_prompt_tokens(workspace)
    budget = cny(round(prompt * 1.25) + MAX_TOKENS + 5)
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, shard_size=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    again = FakeGLM(default=wrong_first)
    summary = run(workspace, again, concurrency=3, shard_size=1, max_tokens=MAX_TOKENS, output="again.parquet")
    out = pl.read_parquet(workspace / "again.parquet")
    assert out["_status"].to_list() == ["ok"] * 5
    assert len(again.requests) == 1 + 2 * 2  # the re-ask of the row paid before; the other two texts in full
    assert summary.requests.sent == out["_attempts"].sum() == len(again.requests)
    assert summary.requests.reasks == out["_reasks"].sum() == 3
    assert summary.cost_cny == pytest.approx(out["_cost_cny"].sum(), abs=1e-6)
