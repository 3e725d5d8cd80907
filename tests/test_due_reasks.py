"""A row whose re-ask the budget did not allow still owes that re-ask: `glm-extract rejudge` must not
close it (judged again, its stored answer still fails the schema; only an answer the current schema
accepts ends the wait), and `glm-extract estimate` must count it as a request to pay, not as an
answer in the journal."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.commands.estimate import estimate_input
from pipeline.journal import Journal
from pipeline.rejudge import rejudge_journal
from pipeline.tasks import load_task
from tests.fakes import FakeGLM
from tests.test_budget_reasks import MAX_TOKENS, cny, first_prompt_tokens, one_row, wrong_first
from tests.test_runner import run, settings, workspace  # noqa: F401 - the fixture is used by name


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
