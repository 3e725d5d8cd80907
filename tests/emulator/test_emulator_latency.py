"""Item: latency follows tokens (first token + prompt/prefill + completion/decode, seeded jitter)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from emulator import EmulatorConfig, LatencySpec, serve_in_thread
from emulator.config import REALISTIC_LATENCY
from emulator.faults import draw_latency

SCHEMA = {"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string"}}}


def test_token_latency_is_first_token_plus_prefill_plus_decode() -> None:
    spec = LatencySpec.parse("tokens:0.4,20000,60")
    assert draw_latency(spec, 1.0, 0, "k", 0, prompt_tokens=2000, completion_tokens=300) == pytest.approx(
        0.4 + 2000 / 20000 + 300 / 60
    )
    # a longer answer takes longer; that is the throughput lever a fixed latency hid
    short = draw_latency(spec, 1.0, 0, "k", 0, prompt_tokens=2000, completion_tokens=50)
    assert short < draw_latency(spec, 1.0, 0, "k", 0, prompt_tokens=2000, completion_tokens=400)


def test_jitter_is_seeded_and_per_request() -> None:
    spec = LatencySpec.parse("tokens:0.4,20000,60,0.3")
    draws = [draw_latency(spec, 1.0, 7, f"key{i}", 0, prompt_tokens=800, completion_tokens=200) for i in range(200)]
    again = [draw_latency(spec, 1.0, 7, f"key{i}", 0, prompt_tokens=800, completion_tokens=200) for i in range(200)]
    assert draws == again
    assert len(set(draws)) > 150
    nominal = 0.4 + 800 / 20000 + 200 / 60
    median = sorted(draws)[100]
    assert nominal * 0.8 < median < nominal * 1.2


def test_the_named_default_profile_and_the_old_specs_parse() -> None:
    assert LatencySpec.parse("realistic") == REALISTIC_LATENCY
    assert REALISTIC_LATENCY.kind == "tokens"
    assert LatencySpec.parse(str(REALISTIC_LATENCY)) == REALISTIC_LATENCY
    assert draw_latency(LatencySpec.parse("fixed:0.2"), 1.0, 0, "k", 0, prompt_tokens=9999,
                        completion_tokens=9999) == pytest.approx(0.2)
    for bad in ("tokens:0.4,0,60", "tokens:0.4,20000", "tokens:-1,1,1"):
        with pytest.raises(ValueError):
            LatencySpec.parse(bad)


def test_load_near_the_cap_slows_answers_down() -> None:
    spec = LatencySpec.parse("tokens:0.4,20000,60")
    idle = draw_latency(spec, 1.0, 0, "k", 0, prompt_tokens=500, completion_tokens=200, load=0.0, slowdown=0.5)
    full = draw_latency(spec, 1.0, 0, "k", 0, prompt_tokens=500, completion_tokens=200, load=1.0, slowdown=0.5)
    assert full == pytest.approx(idle * 1.5)


def test_the_server_waits_for_the_answer_it_sends() -> None:
    """The delay the server applies (reported in a header) follows the answer's own usage."""
    spec = LatencySpec.parse("tokens:0.01,1000000,20000")
    body: dict[str, Any] = {
        "model": "glm-4-air-250414", "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": f"<json_schema>\n{json.dumps(SCHEMA)}\n</json_schema>"},
                     {"role": "user", "content": "<document>\nThe parcel is late. I want a refund.\n</document>"}],
    }  # fmt: skip
    with serve_in_thread(EmulatorConfig(latency=spec)) as emu:
        response = httpx.post(emu.base_url + "/chat/completions", json=body, timeout=10)
    usage = response.json()["usage"]
    expected = 0.01 + usage["prompt_tokens"] / 1_000_000 + usage["completion_tokens"] / 20000
    assert float(response.headers["X-GLM-Emulator-Delay"]) == pytest.approx(expected, rel=1e-3)
