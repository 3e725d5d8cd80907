"""Item: schema-agnostic answers, so outside clients can be benchmarked on the same emulator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import orjson

from emulator.answers import answer_request
from tests.emulator.support import OUTSIDE_SCHEMA as SCHEMA

DOCUMENT = "Hi, this is Maria Lopez. My order 88812 was damaged; please refund 45.90 USD. Very disappointed."


def _valid(answer_text: str) -> dict[str, Any]:
    instance = orjson.loads(answer_text)
    assert jsonschema_rs.validator_for(SCHEMA).is_valid(instance), instance
    assert instance
    return dict(instance)


def test_a_bare_schema_inside_an_outside_clients_system_prompt() -> None:
    system = ("You are an information extraction engine. Reply with JSON only, matching this JSON Schema:\n"
              + json.dumps(SCHEMA, indent=2) + "\nDo not add commentary.")
    body = {"model": "glm-4-air", "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": DOCUMENT}]}
    _valid(answer_request(body).text)


def test_a_system_message_that_is_only_the_schema_and_not_the_first_system_message() -> None:
    body = {"model": "glm-4-air", "messages": [{"role": "system", "content": "Be terse."},
                                               {"role": "system", "content": json.dumps(SCHEMA)},
                                               {"role": "user", "content": DOCUMENT}]}
    _valid(answer_request(body).text)


def test_an_example_object_before_the_schema_is_not_taken_for_it() -> None:
    system = 'Example output: {"customer_name": "A", "refund_amount": 1, "sentiment": "neutral"}\n' \
             f"Schema: {json.dumps(SCHEMA)}"
    body = {"model": "glm-4-air", "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": DOCUMENT}]}
    _valid(answer_request(body).text)


def test_any_tool_with_parameters_gives_the_schema() -> None:
    tools = [{"type": "web_search", "web_search": {"enable": False}},
             {"type": "function", "function": {"name": "extract_refund", "parameters": SCHEMA}}]
    answer = answer_request({"model": "glm-4-air", "tools": tools,
                             "messages": [{"role": "user", "content": DOCUMENT}]})
    assert answer.tool_name == "extract_refund"
    _valid(answer.text)


def test_without_any_schema_the_answer_is_a_plausible_object_from_the_prompt() -> None:
    answer = answer_request({"model": "glm-4-air", "messages": [
        {"role": "user", "content": "Extract the key facts of this message as JSON. " + DOCUMENT}]})
    instance = orjson.loads(answer.text)
    assert isinstance(instance, dict) and instance
    texts = [v for value in instance.values() for v in (value if isinstance(value, list) else [value])]
    assert any(isinstance(v, str) and "refund" in v.lower() for v in texts), instance
