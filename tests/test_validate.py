from __future__ import annotations

import orjson

from pipeline.validate import Filtered, Reask, Valid, build_reask, compile_validator, judge, parse_json_object

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
          "required": ["name", "n"], "additionalProperties": False}
VALIDATOR = compile_validator(SCHEMA)


def test_plain_fenced_and_prose_wrapped_json_parse() -> None:
    assert parse_json_object('{"name": "a", "n": 1}') == {"name": "a", "n": 1}
    assert parse_json_object('```json\n{"name": "a", "n": 1}\n```') == {"name": "a", "n": 1}
    assert parse_json_object('Sure! {"name": "a", "n": 1} Hope this helps.') == {"name": "a", "n": 1}
    assert parse_json_object("not json at all") is None
    assert parse_json_object("[1, 2]") is None


def test_judge_outcomes() -> None:
    assert judge('```json\n{"name": "a", "n": 1}\n```', "stop", VALIDATOR) == Valid({"name": "a", "n": 1})
    assert isinstance(judge('{"name": "a"', "length", VALIDATOR), Reask)
    assert isinstance(judge("", "stop", VALIDATOR), Reask)
    assert isinstance(judge("x", "sensitive", VALIDATOR), Filtered)
    verdict = judge('{"name": 5, "n": 1}', "stop", VALIDATOR)
    assert isinstance(verdict, Reask) and verdict.code == "schema_invalid"
    assert any(line.startswith("/name") for line in verdict.errors)


def test_reask_is_a_copy_carrying_answer_and_errors() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    verdict = judge('{"n": "x"}', "stop", VALIDATOR)
    assert isinstance(verdict, Reask)
    again = build_reask(body, '{"n": "x"}', verdict)
    assert len(body["messages"]) == 2  # the original is untouched
    assert again["messages"][2] == {"role": "assistant", "content": '{"n": "x"}'}
    follow_up = again["messages"][3]["content"]
    assert "/n" in follow_up and "required" in follow_up
    assert orjson.dumps(again)  # still serialisable
