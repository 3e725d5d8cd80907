"""Item: implicit prefix cache: cached_tokens for a recently seen prefix, priced apart by glm-extract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import EmulatorConfig, serve_in_thread
from pipeline.settings import Settings
from pipeline.tokens import MESSAGE_OVERHEAD, count_text_tokens
from tests.emulator.support import run_pipeline

SYSTEM = "Extract fields. " + json.dumps({"type": "object", "properties": {"summary": {"type": "string"}}}) * 20


def body_for(document: str, system: str = SYSTEM) -> dict[str, Any]:
    return {"model": "glm-4-air-250414", "messages": [{"role": "system", "content": system},
                                                      {"role": "user", "content": document}]}


def cached(emu_url: str, body: dict[str, Any]) -> int:
    usage = httpx.post(emu_url + "/chat/completions", json=body, timeout=10).json()["usage"]
    return int(usage["prompt_tokens_details"]["cached_tokens"])


def test_a_shared_system_prompt_is_cached_from_the_second_request_on() -> None:
    system_tokens = count_text_tokens(SYSTEM) + MESSAGE_OVERHEAD
    with serve_in_thread(EmulatorConfig()) as emu:
        assert cached(emu.base_url, body_for("first document")) == 0
        assert cached(emu.base_url, body_for("second document")) == system_tokens
        assert cached(emu.base_url, body_for("third", system="Another prompt entirely.")) == 0
        whole = httpx.post(emu.base_url + "/chat/completions", json=body_for("first document"), timeout=10).json()
        assert whole["usage"]["prompt_tokens_details"]["cached_tokens"] == whole["usage"]["prompt_tokens"]
        emu.reset()
        assert cached(emu.base_url, body_for("second document")) == 0


def test_the_run_prices_cached_tokens_apart(tmp_path: Path) -> None:
    price, cached_price = 0.5, 0.1
    with serve_in_thread(EmulatorConfig(concurrency=8)) as emu:
        summary = run_pipeline(emu.base_url, tmp_path, concurrency=8, price_cny_per_mtok=price,
                               price_cached_cny_per_mtok=cached_price)
    tokens = summary["tokens"]
    assert 0 < tokens["cached"] < tokens["prompt"]
    expected = ((tokens["prompt"] - tokens["cached"] + tokens["completion"]) * price
                + tokens["cached"] * cached_price) / 1e6
    assert summary["cost_cny"] == pytest.approx(expected, abs=2e-6)
    full = (tokens["prompt"] + tokens["completion"]) * price / 1e6
    assert summary["cost_cny"] < full


def test_the_default_cached_price_is_the_unconfirmed_figure_and_says_so() -> None:
    field = Settings.model_fields["price_cached_cny_per_mtok"]
    assert Settings().price_cached_cny_per_mtok == 0.25
    assert "unconfirmed" in (field.description or "").lower()
