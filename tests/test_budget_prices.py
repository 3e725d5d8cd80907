"""What the budget counts money at, and what it does when the platform bills more than it reserved.

- Cached prompt tokens: their price is unconfirmed (docs/glm_platform.md), so a budget settles them
  at the full input price unless the user set ``price_cached_cny_per_mtok`` (the setting, its
  environment variable); the summary says which price the budget used.
- A platform whose tokenizer counts three times the rule of thumb: the run says by how much it went
  over its budget (summary and one console line), and reservations learn the largest billed ÷
  counted ratio of the run, so only requests reserved before the first answer can overshoot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.tokens import count_prompt_tokens
from tests.fakes import FakeGLM, completion
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name

PRICE = 0.5  # CNY per million tokens (the settings' default)
ANSWER_TOKENS = 10


def many_rows(ws: Path, rows: int) -> None:
    pl.DataFrame({"id": [f"d{i}" for i in range(rows)], "body": [f"document {i:03d}" for i in range(rows)]}
                 ).write_parquet(ws / "in.parquet")


def content(body: dict[str, Any]) -> str:
    return str(orjson.loads(good(body).content)["choices"][0]["message"]["content"])


def mostly_cached(body: dict[str, Any]) -> Any:
    """Every prompt but 5 tokens served from the platform's cache."""
    prompt = count_prompt_tokens(body["messages"])
    return completion(content(body), prompt_tokens=prompt, completion_tokens=ANSWER_TOKENS, cached_tokens=prompt - 5)


def full_price_bill(fake: FakeGLM) -> float:
    return sum(count_prompt_tokens(b["messages"]) + ANSWER_TOKENS for b in fake.answered) * PRICE / 1e6


def test_a_budget_settles_cached_tokens_at_the_full_price_unless_told_otherwise(workspace: Path) -> None:  # noqa: F811
    many_rows(workspace, 60)
    budget = 0.0008
    fake = FakeGLM(default=mostly_cached)
    summary = run(workspace, fake, concurrency=2, shard_size=20, max_tokens=50, budget_cny=budget)
    assert 3 < len(fake.answered) < 60
    assert full_price_bill(fake) <= budget  # the cached price is unconfirmed: never count on it
    assert summary.budget is not None and summary.budget.cached_price_cny_per_mtok == PRICE
    assert summary.budget.spent_cny == pytest.approx(full_price_bill(fake), abs=1e-6)
    assert summary.cost_cny < summary.budget.spent_cny  # the reported cost keeps the discounted figure
    assert summary.to_dict()["budget"]["cached_price_cny_per_mtok"] == PRICE


@pytest.mark.parametrize("how", ["setting", "environment"])
def test_a_cached_price_the_user_set_is_the_one_the_budget_uses(workspace: Path, how: str,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    many_rows(workspace, 60)
    budget = 0.0008
    extra: dict[str, Any] = {}
    if how == "setting":
        extra["price_cached_cny_per_mtok"] = 0.1
    else:
        monkeypatch.setenv("GLM_EXTRACT_PRICE_CACHED_CNY_PER_MTOK", "0.1")
    fake = FakeGLM(default=mostly_cached)
    summary = run(workspace, fake, concurrency=2, shard_size=20, max_tokens=50, budget_cny=budget, **extra)
    assert summary.budget is not None and summary.budget.cached_price_cny_per_mtok == 0.1
    assert summary.cost_cny <= budget and summary.budget.spent_cny == pytest.approx(summary.cost_cny, abs=1e-9)


def test_a_run_without_a_budget_writes_no_budget_block(workspace: Path) -> None:  # noqa: F811
    summary = run(workspace, FakeGLM(default=good))
    assert summary.budget is None and "budget" not in summary.to_dict()


def triple(body: dict[str, Any]) -> Any:
    """A platform whose tokenizer bills three times the prompt tokens the rule of thumb counts."""
    prompt = count_prompt_tokens(body["messages"])
    return completion(content(body), prompt_tokens=3 * prompt, completion_tokens=ANSWER_TOKENS)


def tripled_bill(fake: FakeGLM) -> float:
    return sum(3 * count_prompt_tokens(b["messages"]) + ANSWER_TOKENS for b in fake.answered) * PRICE / 1e6


def test_reservations_learn_what_the_platform_bills_so_only_the_first_answer_can_overshoot(workspace: Path) -> None:  # noqa: F811
    many_rows(workspace, 40)
    fake = FakeGLM(default=triple)
    budget = 0.0015
    summary = run(workspace, fake, concurrency=1, shard_size=40, max_tokens=50, budget_cny=budget)
    assert 3 < len(fake.answered) < 40
    assert tripled_bill(fake) <= budget  # one at a time: after the first answer every reservation knew 3×
    assert summary.budget is not None and summary.budget.over_cny == 0


def test_with_many_in_flight_the_first_answer_teaches_the_window_before_it_opens(workspace: Path) -> None:  # noqa: F811
    many_rows(workspace, 40)
    fake = FakeGLM(default=triple, delay_s=0.02)
    budget = 0.0015
    summary = run(workspace, fake, concurrency=20, shard_size=40, max_tokens=50, budget_cny=budget)
    assert 3 < len(fake.answered) < 40
    assert tripled_bill(fake) <= budget  # requests waited for the first answer's lesson, not just one
    assert fake.max_in_flight > 1  # and the window opened after it
    assert summary.budget is not None and summary.budget.over_cny == 0


def test_a_run_that_ends_over_its_budget_says_by_how_much(workspace: Path,  # noqa: F811
                                                         caplog: pytest.LogCaptureFixture) -> None:
    many_rows(workspace, 10)
    probe = FakeGLM(default=good)
    run(workspace, probe, journal_path=workspace / "probe.sqlite", output="probe.parquet")
    prompt = count_prompt_tokens(probe.requests[0]["messages"])
    budget = (prompt * 1.25 + 50 + 5) * PRICE / 1e6  # one request's reservation fits; its 3× bill does not
    fake = FakeGLM(default=triple)
    with caplog.at_level(logging.WARNING):
        summary = run(workspace, fake, concurrency=1, shard_size=10, max_tokens=50, budget_cny=budget)
    assert len(fake.answered) == 1  # the next reservation counts the prompt at 3×: it does not fit
    over = tripled_bill(fake) - budget
    assert over > 0 and summary.cost_cny == pytest.approx(budget + over, abs=1e-6)  # the summary rounds to 6 places
    assert summary.budget is not None and summary.budget.over_cny == pytest.approx(over, abs=1e-6)
    lines = [r.getMessage() for r in caplog.records if "over its budget" in r.getMessage()]
    assert len(lines) == 1 and f"{summary.budget.over_cny:.6f} CNY over" in lines[0] and "\n" not in lines[0]
