"""Fault and latency decisions, broken answers, config parsing and request checks (pure, no server)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import jsonschema_rs
import orjson
import pytest

from emulator.cli import build_parser, config_from_args
from emulator.config import EmulatorConfig, LatencySpec, parse_fault
from emulator.faults import FaultTable, break_answer, decide_fault, draw_latency, violate_schema
from emulator.hashing import content_key
from emulator.schema_plan import compile_schema
from emulator.wire import check_request

KEYS = [f"sha256:{i:064x}" for i in range(2000)]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "count"],
    "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
}


def test_fault_rates_are_roughly_honoured() -> None:
    rates = {"1302": 0.10, "500": 0.05, "fence": 0.05, "hang": 0.02, "truncated": 0.08}
    table = FaultTable.from_rates(EmulatorConfig(faults=rates).faults)
    counts = Counter(decide_fault(table, 7, key, 0) for key in KEYS)
    for name, rate in rates.items():
        expected = rate * len(KEYS)
        assert abs(counts[name] - expected) < 4 * math.sqrt(expected) + 2, (name, counts[name], expected)
    assert abs(counts[None] - 0.70 * len(KEYS)) < 4 * math.sqrt(0.7 * 0.3 * len(KEYS))


def test_decisions_are_deterministic_and_depend_on_the_seed() -> None:
    table = FaultTable.from_rates({"1302": 0.3, "empty": 0.2})
    pattern = [decide_fault(table, 1, key, 0) for key in KEYS[:300]]
    assert pattern == [decide_fault(table, 1, key, 0) for key in KEYS[:300]]
    other_seed = [decide_fault(table, 2, key, 0) for key in KEYS[:300]]
    assert sum(a != b for a, b in zip(pattern, other_seed, strict=True)) > 60


def test_a_retry_of_the_same_content_eventually_succeeds() -> None:
    table = FaultTable.from_rates({"1302": 0.5, "503": 0.3})
    for key in KEYS[:200]:
        attempts = [decide_fault(table, 3, key, attempt) for attempt in range(40)]
        assert None in attempts
    first = [decide_fault(table, 3, key, 0) for key in KEYS[:200]]
    second = [decide_fault(table, 3, key, 1) for key in KEYS[:200]]
    assert first != second


def test_sensitive_input_is_sticky_per_content() -> None:
    table = FaultTable.from_rates({"sensitive_input": 0.3, "1302": 0.2})
    filtered = [key for key in KEYS if decide_fault(table, 5, key, 0) == "sensitive_input"]
    assert abs(len(filtered) - 600) < 100
    for key in filtered[:100]:
        assert all(decide_fault(table, 5, key, attempt) == "sensitive_input" for attempt in range(20))
    clean = [key for key in KEYS if decide_fault(table, 5, key, 0) != "sensitive_input"]
    assert all(decide_fault(table, 5, key, 9) != "sensitive_input" for key in clean[:100])


def test_no_faults_means_no_faults() -> None:
    table = FaultTable.from_rates({})
    assert {decide_fault(table, 0, key, 0) for key in KEYS[:500]} == {None}


def test_latency_draws() -> None:
    assert draw_latency(LatencySpec.parse("fixed:0.2"), 1.0, 0, "k", 0) == pytest.approx(0.2)
    assert draw_latency(LatencySpec.parse("fixed:0.2"), 0.5, 0, "k", 0) == pytest.approx(0.1)
    uniform = [draw_latency(LatencySpec.parse("uniform:0.1,0.3"), 1.0, 0, key, 0) for key in KEYS[:500]]
    assert min(uniform) >= 0.1 and max(uniform) <= 0.3 and max(uniform) - min(uniform) > 0.15
    lognormal = sorted(draw_latency(LatencySpec.parse("lognormal:0.2,0.5"), 1.0, 0, k, 0) for k in KEYS)
    assert lognormal[len(lognormal) // 2] == pytest.approx(0.2, rel=0.1)
    assert draw_latency(LatencySpec("lognormal", 0.2, 0.5), 1.0, 9, "k", 3) == draw_latency(
        LatencySpec("lognormal", 0.2, 0.5), 1.0, 9, "k", 3
    )


def test_broken_answers_are_broken_the_documented_way() -> None:
    instance = {"name": "x", "count": 2}
    text = orjson.dumps(instance).decode()
    plan = compile_schema(SCHEMA)
    fence = break_answer("fence", text, instance, plan)
    assert fence.text.startswith("```json\n") and orjson.loads(fence.text[8:-4]) == instance
    prose = break_answer("prose", text, instance, plan)
    assert prose.text.startswith(text) and len(prose.text) > len(text)
    for name in ("prose", "malformed", "truncated"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(break_answer(name, text, instance, plan).text)
    violation = orjson.loads(break_answer("schema_violation", text, instance, plan).text)
    assert not jsonschema_rs.validator_for(SCHEMA).is_valid(violation)
    assert break_answer("truncated", text, instance, plan).finish_reason == "length"
    assert break_answer("empty", text, instance, plan).text == ""
    sensitive = break_answer("sensitive_output", text, instance, plan)
    assert (sensitive.finish_reason, sensitive.content_filter) == ("sensitive", True)
    assert len(sensitive.text) < len(text)
    with pytest.raises(ValueError, match="not a broken-answer"):
        break_answer("1302", text, instance, plan)


def test_schema_violation_without_required_fields_changes_a_type() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    violated = violate_schema({"a": "text"}, compile_schema(schema))
    assert not jsonschema_rs.validator_for(schema).is_valid(violated)


def test_config_parsing_and_validation() -> None:
    assert LatencySpec.parse("uniform:0.1,0.3") == LatencySpec("uniform", 0.1, 0.3)
    assert parse_fault("1301=0.2") == ("sensitive_input", 0.2)
    for bad in ("gauss:1", "fixed:", "uniform:0.3,0.1", "fixed:-1"):
        with pytest.raises(ValueError):
            LatencySpec.parse(bad)
    with pytest.raises(ValueError, match="unknown fault"):
        EmulatorConfig(faults={"teapot": 0.1})
    with pytest.raises(ValueError, match="sum"):
        EmulatorConfig(faults={"1302": 0.7, "500": 0.6})
    with pytest.raises(ValueError):
        EmulatorConfig(concurrency=0)
    assert "secret" not in repr(EmulatorConfig(api_key="secret"))


def test_cli_flags_round_trip_the_config() -> None:
    config = EmulatorConfig(
        port=0, concurrency=7, latency=LatencySpec("lognormal", 0.2, 0.5), latency_scale=0.5, seed=11,
        faults={"1302": 0.1, "hang": 0.02, "sensitive_input": 0.01}, hang_seconds=30.0,
        fatal_1113_from=500, fatal_401_from=900,
    )  # fmt: skip
    parsed = config_from_args(build_parser().parse_args(config.to_argv()))
    assert parsed == config
    args = build_parser().parse_args(["--fault", "1302=0.1", "--fault", "1302=0.1", "--latency", "fixed:0.2"])
    assert config_from_args(args).faults == {"1302": 0.2}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messages": []}, "1214"),
        ({}, "1214"),
        ({"messages": [{"role": "system", "content": "s"}]}, "1214"),
        ({"messages": [{"role": "robot", "content": "s"}]}, "1214"),
        ({"messages": [{"role": "user", "content": "u"}], "max_tokens": 16385}, "1214"),
        ({"messages": [{"role": "user", "content": "u"}], "temperature": 1.5}, "1210"),
        ({"messages": [{"role": "user", "content": "u"}], "temperature": -0.1}, "1210"),
        ({"messages": [{"role": "user", "content": "u"}], "tool_choice": "required"}, "1214"),
        ({"messages": [{"role": "user", "content": "u"}], "stop": ["a", "b"]}, "1214"),
        ({"messages": [{"role": "user", "content": "u"}], "response_format": {"type": "json_schema"}}, "1214"),
        ([1, 2], "1214"),
    ],
)
def test_parameter_checks(body: Any, code: str) -> None:
    error = check_request(body)
    assert error is not None and (error.status, error.code) == (400, code)


def test_a_normal_body_passes_the_checks() -> None:
    body = {"model": "any-model", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "temperature": 0, "max_tokens": 16384, "response_format": {"type": "json_object"}}  # fmt: skip
    assert check_request(body) is None


def test_content_key_ignores_the_request_id() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "u"}]}
    assert content_key({**body, "request_id": "a"}) == content_key({**body, "request_id": "b"}) == content_key(body)
    assert content_key(body).startswith("sha256:")
