"""An endpoint that leaves ``usage`` out of its answers, or garbles it, must not make answers free:
a gateway stripping usage made ``--budget-cny 0.005`` send every request (31× the budget on the
upstream's bill) and report 0 CNY, and negative counts gave a negative cost that freed budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

from pipeline.journal import Journal
from pipeline.tokens import count_prompt_tokens
from tests.fakes import FakeGLM, completion
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name

ROWS = 40


def _without_usage(body: dict[str, Any]) -> httpx.Response:
    data = orjson.loads(good(body).content)
    del data["usage"]
    return httpx.Response(200, content=orjson.dumps(data))


def _negative_usage(body: dict[str, Any]) -> httpx.Response:
    data = orjson.loads(good(body).content)
    data["usage"] = {"prompt_tokens": -5000, "completion_tokens": 20, "total_tokens": -4980}
    return httpx.Response(200, content=orjson.dumps(data))


def _rows(ws: Path) -> None:
    pl.DataFrame({"id": [f"u{i}" for i in range(ROWS)], "body": [f"document number {i} about refunds"
                                                                for i in range(ROWS)]}).write_parquet(ws / "in.parquet")


def _usage_not_an_object(body: dict[str, Any]) -> httpx.Response:
    data = orjson.loads(good(body).content)
    data["usage"] = "n/a"  # a gateway's placeholder: the answer was paid, and must be journaled
    return httpx.Response(200, content=orjson.dumps(data))


@pytest.mark.parametrize("reply", [_without_usage, _negative_usage, _usage_not_an_object])
def test_answers_without_usable_usage_are_counted_by_our_rule_and_the_budget_holds(workspace: Path,  # noqa: F811
                                                                                   reply: Any) -> None:
    _rows(workspace)
    fake = FakeGLM(default=reply)
    priced = FakeGLM(default=good)  # the same requests, with usage: what one request costs by our count
    one = run(workspace, priced, concurrency=1, shard_size=100, output="priced.parquet", max_tokens=50,
              journal_path=workspace / "priced.sqlite")
    per_row = one.cost_cny / ROWS
    budget = per_row * 10
    summary = run(workspace, fake, concurrency=4, shard_size=100, max_tokens=50, budget_cny=budget)
    assert 0 < summary.cost_cny <= budget, summary.cost_cny
    assert len(fake.requests) < ROWS  # the budget stopped the run
    out = pl.read_parquet(workspace / "out.parquet")
    counted = count_prompt_tokens(fake.requests[0]["messages"], fake.requests[0].get("tools"))
    assert out.filter(pl.col("_status") == "ok")["_prompt_tokens"].min() == counted  # our rule's count, not 0
    assert summary.tokens.counted_by_rule == len(fake.requests)  # and the summary says so
    with Journal(workspace / "journal.sqlite") as journal:  # no bill to teach the estimate the platform's count
        assert {entry.counted_prompt for entry in journal.entries("mini")} == {0}


def test_cached_tokens_above_the_prompt_are_not_believed(workspace: Path) -> None:  # noqa: F811
    _rows(workspace)

    def too_cached(body: dict[str, Any]) -> httpx.Response:
        return completion(orjson.loads(good(body).content)["choices"][0]["message"]["content"],
                          prompt_tokens=10, cached_tokens=500)

    summary = run(workspace, FakeGLM(default=too_cached), concurrency=2, shard_size=100)
    assert summary.cost_cny > 0 and summary.tokens.cached == 0


def test_a_budgeted_run_without_usage_still_uses_its_concurrency(workspace: Path) -> None:  # noqa: F811
    """Answers without usage teach the budget nothing, ever: its requests must not wait one at a time
    for a lesson (they did: 0.99 requests in flight at --concurrency 8, review r3 F2)."""
    _rows(workspace)
    fake = FakeGLM(default=_without_usage, delay_s=0.02)
    summary = run(workspace, fake, concurrency=8, shard_size=100, max_tokens=50, budget_cny=10.0)
    assert summary.count("ok") == ROWS and fake.max_in_flight > 4, fake.max_in_flight

