"""A paid answer whose re-ask no longer fits the budget is kept, not thrown away.

The row ends ``invalid``/``budget_reached`` (it was sent and paid for, so it is not ``skipped``),
``requests.reasks`` counts only re-asks that were sent, and a later run with more budget sends only
the re-ask: the first request is never paid twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.tokens import count_prompt_tokens
from tests.fakes import FakeGLM, completion, document_of
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
