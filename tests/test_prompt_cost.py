"""Lean prompts: what a row pays for beyond its document and its answer (issue: cost per row).

Token counts follow the project's rule of thumb (pipeline/tokens.py); answers come from the
emulator's pure answer builder, so nothing here needs a server.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import polars as pl
import pytest

from emulator.answers import answer_request
from pipeline.estimate import Prices, needs_request, sample_costs
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.tasks import TaskSpec, load_task
from tests.conftest import SAMPLE, SCHEMAS

SAMPLES = {"ticket_qa": "tickets.parquet", "financial_report": "financial_reports.parquet"}


def _rows(task: str) -> list[dict[str, Any]]:
    return pl.read_parquet(SAMPLE / SAMPLES[task]).to_dicts()


def _enums(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        found = [node["enum"]] if isinstance(node.get("enum"), list) else []
        return found + [e for value in node.values() for e in _enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in _enums(value)]
    return []


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_system_message_carries_no_schema_boilerplate(name: str) -> None:
    task = load_task(name, SCHEMAS)
    system = system_message(task, "json")
    for noise in ('"$schema"', '"title"', '"additionalProperties"', '"required"'):
        assert noise not in system, noise
    # what those keywords said is stated once, in words
    assert system.count("no other key") == 1


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_enum_value_is_listed_once(name: str) -> None:
    task = load_task(name, SCHEMAS)
    system = system_message(task, "json")
    template = task.prompt_template
    enums = _enums(task.schema)
    assert enums
    for values in enums:
        for value in values:
            quoted = json.dumps(value, ensure_ascii=False)
            expected = sum(quoted_value == value for other in enums for quoted_value in other)
            assert system.count(quoted) + template.count(quoted) == expected, (name, value)
            # and no description or instruction spells the value out again in single quotes
            assert f"'{value}'" not in system + template, (name, value)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_fixed_part_first_identical_across_rows_and_the_document_last(name: str) -> None:
    task = load_task(name, SCHEMAS)
    first, second = _rows(name)[:2]
    options = RenderOptions(model="glm-4-air-250414")
    a, b = render_request(task, first, options), render_request(task, second, options)
    assert a["messages"][0] == b["messages"][0]
    for body in (a, b):
        user = body["messages"][1]["content"]
        assert user.rstrip().endswith("</document>"), "the document must be the last thing sent"
        # only the row's own values sit before the frame: no instruction text that a cache could share
        assert len(user[: user.index("<document>")]) < 40


# Phrases that name one rule each. Before the rewrite several were said in the instructions, in the
# template and in a schema description; each must now be said exactly once in the whole prompt.
RULE_PHRASES = {
    "ticket_qa": ["verb phrase", "explicit", "no agent turns", "role play", "Markdown", "never invent",
                  "in the language of the conversation", "not a side remark"],
    "financial_report": ["never convert", "cumulative", "归母净利润", "role play", "Markdown",
                         "Do not add generic risks", "a loss is", "comparison year"],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_rule_is_said_once(name: str) -> None:
    task = load_task(name, SCHEMAS)
    prompt = (system_message(task, "json") + "\n" + task.prompt_template).lower()
    for phrase in RULE_PHRASES[name]:
        assert prompt.count(phrase.lower()) == 1, (name, phrase, prompt.count(phrase.lower()))


@pytest.mark.parametrize("mode", ["json", "tools"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_emulator_still_finds_the_schema_and_answers_validly(name: str, mode: str) -> None:
    task = load_task(name, SCHEMAS)
    validator = jsonschema_rs.validator_for(task.schema)
    for row in _rows(name)[:10]:
        body = render_request(task, row, RenderOptions(model="m", mode=mode))  # type: ignore[arg-type]
        answer = answer_request(body)
        assert answer.plan is not None
        assert validator.is_valid(answer.instance), answer.text


def _answer_text(task: TaskSpec, row: dict[str, Any]) -> str:
    return answer_request(render_request(task, row, RenderOptions(model="m"))).text


def test_ticket_qa_overhead_stays_lean() -> None:
    """Prompt 2026-11-26.2 paid 2,182 tokens of our own words per row (6.3× the floor online, 3.9×
    with the cache at half price); the lean prompt must stay well under that (docs/performance.md)."""
    task = load_task("ticket_qa", SCHEMAS)
    rows = _rows("ticket_qa")
    costs = sample_costs(task, rows, [_answer_text(task, r) for r in rows], RenderOptions(model="m"),
                         Prices(online=0.5, cached=0.25))
    assert costs.overhead_tokens_per_row < 1300, costs
    assert costs.overhead_ratio < 4.2 and costs.overhead_ratio_cached < 2.6, costs


def test_overhead_is_measured_not_assumed() -> None:
    """The split is exact: overhead + document = prompt, for every row."""
    task = load_task("financial_report", SCHEMAS)
    rows = _rows("financial_report")
    costs = sample_costs(task, rows, ["{}"] * len(rows), RenderOptions(model="m"), Prices(online=0.5, cached=0.25))
    assert costs.rows == sum(needs_request(task, row) for row in rows) == len(rows) - 1  # one blank text
    assert costs.prompt_tokens_per_row == pytest.approx(costs.overhead_tokens_per_row + costs.document_tokens_per_row)
    assert 0 < costs.cached_tokens_per_row < costs.overhead_tokens_per_row
    paid = costs.prompt_tokens_per_row + costs.completion_tokens_per_row
    assert costs.cny_per_1k_rows_online == pytest.approx(paid * 0.5 / 1000)
    assert costs.cny_per_1k_rows_batch == pytest.approx(costs.cny_per_1k_rows_online / 2)
