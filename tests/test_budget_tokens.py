"""The budget against a platform whose tokenizer counts what the rule of thumb did not see: long
ids, phone numbers, hex and base64 dumps (logs, crash reports, attachments in a ticket).

GLM-4's tokenizer splits text before its BPE merges (letter runs, digit groups of at most three,
punctuation runs), and a BPE never merges across those pieces, so a platform bills at least one
token per piece. The fake here bills exactly that lower bound: any real tokenizer of this kind bills
at least as much. A run must stay under its budget against it."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.tokens import MESSAGE_OVERHEAD, count_text_tokens, message_text
from tests.fakes import FakeGLM, completion
from tests.test_runner import good, run, workspace  # noqa: F401 - the fixture is used by name

#: GLM-4's pre-tokenizer on ASCII (its pattern's letter, digit and punctuation alternatives).
_PIECE = re.compile(r"[^\s\w]?[A-Za-z]+|[0-9]{1,3}|[^\sA-Za-z0-9]+")
ANSWER_TOKENS = 40


def pieces(text: str) -> int:
    """At least what a tokenizer splitting like GLM-4's bills: one token per piece (non-ASCII
    characters at the rule of thumb's 1.5 per token, like GLM's own documented ratio)."""
    ascii_text = "".join(ch if ord(ch) < 128 else " " for ch in text)
    return len(_PIECE.findall(ascii_text)) + sum(ord(ch) >= 128 for ch in text) * 2 // 3


def billed(body: dict[str, Any]) -> int:
    return sum(pieces(message_text(m)) + MESSAGE_OVERHEAD for m in body["messages"])


def platform(body: dict[str, Any]) -> Any:
    answer = orjson.loads(good(body).content)["choices"][0]["message"]["content"]
    return completion(answer, prompt_tokens=billed(body), completion_tokens=ANSWER_TOKENS)


def _dumps(rows: int) -> list[str]:
    rng = random.Random(5)
    kinds = [lambda: os.urandom(900).hex(),  # a hex dump
             lambda: " ".join(f"138{rng.randrange(10**8):08d}" for _ in range(120)),  # phone numbers
             lambda: " ".join(f"SN-{rng.randrange(16**12):012X}-{rng.randrange(10**6)}" for _ in range(80))]
    return [f"crash report {i}: " + kinds[i % 3]() for i in range(rows)]


@pytest.mark.parametrize("budget", [0.004, 0.01])
def test_the_budget_holds_against_a_tokenizer_that_bills_every_piece(workspace: Path, budget: float) -> None:  # noqa: F811
    toml = workspace / "schemas" / "mini" / "task.toml"
    toml.write_text(toml.read_text().replace("max_input_chars = 200", "max_input_chars = 100000"))
    rows = 60
    pl.DataFrame({"id": [f"d{i}" for i in range(rows)], "body": _dumps(rows)}).write_parquet(workspace / "in.parquet")
    fake = FakeGLM(default=platform, delay_s=0.02)
    summary = run(workspace, fake, concurrency=20, shard_size=20, max_tokens=100, budget_cny=budget)
    assert_the_budget_held(workspace, fake, summary.cost_cny, budget, billed)


def assert_the_budget_held(ws: Path, fake: FakeGLM, cost_cny: float, budget: float,
                           billed: Callable[[dict[str, Any]], int], answer_tokens: int = ANSWER_TOKENS) -> None:
    """The run booked what ``fake`` billed (each request's ``billed`` prompt and ``answer_tokens`` at
    0.5 CNY per million tokens), that stayed within ``budget``, and the rows left were skipped for it."""
    bill = sum(billed(body) + answer_tokens for body in fake.requests) * 0.5 / 1e6
    assert cost_cny == pytest.approx(bill, abs=1e-6)
    assert bill <= budget, f"spent {bill:.5f} CNY of a {budget} CNY budget"
    assert len(fake.requests) > 3  # it did spend the budget on something
    out = pl.read_parquet(ws / "out.parquet")
    assert set(out.filter(pl.col("_status") == "skipped")["_error_code"]) == {"budget_reached"}


def test_the_rule_counts_ids_numbers_and_dumps_at_least_as_the_platform_splits_them() -> None:
    for text in [*_dumps(3), "订单号 2026112900013 电话 13812345678", "SN: 4C1E9B2F-77A0-4D2E-9A11-0B6F3C2D1E7A",
                 "Order A10-448213 was charged twice: 1,299.00 CNY on 2026-11-28."]:
        assert count_text_tokens(text) >= pieces(text), text


def _lcg_punctuation(n: int) -> str:
    """The same pseudo-random punctuation the reference counts below were measured on."""
    marks, x, out = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", 7, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2147483648
        out.append(marks[x % len(marks)])
    return "".join(out)


#: cl100k counts (npm gpt-tokenizer 4.0.0) of what a ticket can attach: the rule must not be far below.
BPE_REFERENCE = [
    ("log: " + _lcg_punctuation(2000), 353),  # a dump of punctuation
    ("a" + " \n\t " * 500 + "b", 503),  # runs of mixed whitespace
    ("thanks " + "\U0001F600\U0001F389\U0001F44D\U0001F680" * 50, 550),  # emoji: 4-byte characters
    ("Revenue |  2023  |  2022\n" + "--------|--------|--------\n" * 40, 213),  # a text table's rules
]


@pytest.mark.parametrize(("text", "bpe"), BPE_REFERENCE, ids=["punctuation", "whitespace", "emoji", "table"])
def test_the_rule_is_not_far_below_a_bpe_on_punctuation_whitespace_and_emoji(text: str, bpe: int) -> None:
    assert count_text_tokens(text) >= 0.8 * bpe
