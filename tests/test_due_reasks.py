"""A row whose re-ask the budget did not allow still owes that re-ask: `glm-extract rejudge` must not
close it (judged again, its stored answer still fails the schema; only an answer the current schema
accepts ends the wait), and `glm-extract estimate` must count it as a request to pay, not as an
answer in the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.commands.estimate import estimate_input
from pipeline.journal import Journal
from pipeline.rejudge import rejudge_journal
from pipeline.tasks import load_task
from tests.fakes import FakeGLM, document_of
from tests.test_budget_reasks import ANSWER_TOKENS, MAX_TOKENS, cny, first_prompt_tokens, one_row, wrong_first
from tests.test_runner import good, run, settings, workspace  # noqa: F401 - the fixture is used by name


def test_rejudge_keeps_a_due_reask_and_the_next_run_sends_it(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    budget = cny(round(first_prompt_tokens(workspace) * 1.25) + MAX_TOKENS + 5)  # no room for the re-ask
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    with Journal(workspace / "journal.sqlite") as journal:
        report = rejudge_journal(journal, load_task("mini", workspace / "schemas"))
        entries = list(journal.entries("mini"))
    assert report.judged + report.kept == 1
    assert [(e.status, e.error_code) for e in entries] == [("invalid", "budget_reached")]
    later = FakeGLM(default=wrong_first)
    run(workspace, later, concurrency=1, max_tokens=MAX_TOKENS, output="later.parquet")
    assert len(later.requests) == 1 and len(later.requests[0]["messages"]) == 4  # the re-ask, not the first ask
    assert pl.read_parquet(workspace / "later.parquet")["_status"].to_list() == ["ok"]


def test_the_estimate_counts_a_due_reask_as_a_request_to_pay(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    budget = cny(round(first_prompt_tokens(workspace) * 1.25) + MAX_TOKENS + 5)
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    real = settings(workspace, max_tokens=MAX_TOKENS, base_url="http://127.0.0.1:9/api/paas/v4")  # nothing listens
    found = estimate_input("mini", str(workspace / "in.parquet"), real, {})
    assert (found.requests, found.from_journal) == (1, 0)
    assert found.cost_cny > 0


def test_an_estimate_over_rows_still_owed_their_reask_learns_nothing_from_the_rest(workspace: Path) -> None:  # noqa: F811
    # half the rows were answered (ok); the other half failed the schema and were left owed: learning from
    # the ok half alone would say "no re-asks" where every second row needs one
    one_row(workspace, ["hello world", "second row"])
    prompt = first_prompt_tokens(workspace)
    budget = cny(prompt + ANSWER_TOKENS + round(prompt * 1.25) + MAX_TOKENS + 5)  # both first asks, no re-ask

    def second_fails(body: dict[str, Any]) -> Any:
        return wrong_first(body) if document_of(body) == "second row" else good(body)

    run(workspace, FakeGLM(default=second_fails), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    real = settings(workspace, max_tokens=MAX_TOKENS, base_url="http://127.0.0.1:9/api/paas/v4")
    found = estimate_input("mini", str(workspace / "in.parquet"), real, {})
    assert (found.requests, found.from_journal) == (1, 1)
    assert found.allowance is not None and found.allowance["learnt_from"] == 0
    assert "owed a re-ask" in found.allowance["source"]


def test_a_row_owed_its_reask_is_estimated_as_that_reask(workspace: Path) -> None:  # noqa: F811
    one_row(workspace, ["hello world"])
    real = settings(workspace, max_tokens=MAX_TOKENS, base_url="http://127.0.0.1:9/api/paas/v4")
    fresh = estimate_input("mini", str(workspace / "in.parquet"), real, {})
    budget = cny(round(first_prompt_tokens(workspace) * 1.25) + MAX_TOKENS + 5)  # no room for the re-ask
    run(workspace, FakeGLM(default=wrong_first), concurrency=1, max_tokens=MAX_TOKENS, budget_cny=budget)
    owed = estimate_input("mini", str(workspace / "in.parquet"), real, {})
    assert owed.requests == fresh.requests == 1
    assert owed.allowance is not None and fresh.allowance is not None
    # the re-ask carries the first prompt, the stored answer and the validator's errors
    first = fresh.prompt_tokens - fresh.allowance["prompt_tokens"]
    reask = owed.prompt_tokens - owed.allowance["prompt_tokens"]
    assert reask > first
