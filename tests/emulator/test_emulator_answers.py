"""The answer builder: schema-valid, filled from the document, deterministic, cheap (no server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

from emulator.answers import FALLBACK_SCHEMA, answer_request, extract_document, extract_schema_text
from emulator.docfacts import DocFacts
from emulator.schema_plan import compile_schema, plan_for_text
from pipeline.tokens import count_completion_tokens, count_prompt_tokens, count_text_tokens

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

TICKET_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["booking_id", "card_number", "email", "sentiment", "urgency", "summary", "amount",
                 "currency", "created_date", "needs_escalation"],
    "properties": {
        "booking_id": {"type": ["string", "null"]},
        "card_number": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "summary": {"type": "string", "minLength": 5, "maxLength": 60},
        "amount": {"type": ["number", "null"], "minimum": 0},
        "currency": {"type": "string", "enum": ["CNY", "USD", "EUR"]},
        "created_date": {"type": "string", "format": "date"},
        "needs_escalation": {"type": "boolean"},
    },
}  # fmt: skip

FINANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["company", "report_period", "fiscal_year", "revenue", "net_profit", "revenue_yoy_pct",
                 "unit", "currency", "language", "metrics", "risks"],
    "properties": {
        "company": {"type": ["string", "null"]},
        "report_period": {"type": ["string", "null"]},
        "fiscal_year": {"type": "integer", "minimum": 1990, "maximum": 2100},
        "revenue": {"type": ["number", "null"]},
        "net_profit": {"type": ["number", "null"]},
        "revenue_yoy_pct": {"type": ["number", "null"]},
        "unit": {"type": ["string", "null"]},
        "currency": {"type": ["string", "null"]},
        "language": {"type": "string", "enum": ["zh", "en", "other"]},
        "metrics": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"$ref": "#/$defs/metric"}},
        "risks": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 2, "uniqueItems": True},
    },
    "$defs": {
        "metric": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "value", "kind"],
            "properties": {
                "name": {"type": "string"},
                "value": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0, "maximum": 10}]},
                "kind": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            },
        }
    },
}  # fmt: skip

EXOTIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tags", "count", "score", "flag", "nothing", "when", "choice", "nested", "level"],
    "additionalProperties": False,
    "properties": {
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "maxItems": 3,
                 "uniqueItems": True},
        "count": {"type": "integer", "minimum": 3, "maximum": 5},
        "score": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 0.6},
        "flag": {"type": "boolean"},
        "nothing": {"type": "null"},
        "when": {"type": "string", "format": "date-time"},
        "choice": {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                             {"properties": {"y": {"type": "string", "const": "fixed"}}, "required": ["y"]}]},
        "nested": {"$ref": "#/$defs/node"},
        "level": {"type": "string", "minLength": 40},
    },
    "$defs": {"node": {"type": "object",
                       "properties": {"child": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                       "required": ["child"], "additionalProperties": False}},
}  # fmt: skip

EN_TICKET = (
    "Customer [turn 0]: hi\nCustomer [turn 2]: I am really angry, this is terrible service. "
    "My booking number is ABC-12345 and you charged my card 4111 1111 1111 1111 twice, $129.99 each, "
    "on 2024-03-05. Mail me at jane.doe@example.com immediately!"
)
ZH_REPORT = (
    "事件：公司发布《2022年三季度报告》。2022年前三季度，公司实现营收498.45亿元，同比增长71.35%，"
    "实现归母净利润50.01亿元，同比增长80.68%。风险提示：原材料价格波动。"
)


def json_body(schema: dict[str, Any], document: str, **extra: Any) -> dict[str, Any]:
    system = f"Rules.\n<json_schema>\n{json.dumps(schema, ensure_ascii=False, indent=2)}\n</json_schema>"
    return {
        "model": "glm-4-air-250414",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Extract.\n<document>\n{document}\n</document>"},
        ],
        "response_format": {"type": "json_object"},
        **extra,
    }


def tools_body(schema: dict[str, Any], document: str) -> dict[str, Any]:
    return {
        "model": "glm-4-air-250414",
        "messages": [{"role": "system", "content": "Call the function."},
                     {"role": "user", "content": f"<document>{document}</document>"}],
        "tools": [{"type": "function", "function": {"name": "record_extraction", "description": "d",
                                                    "parameters": schema}}],
        "tool_choice": "auto",
    }  # fmt: skip


def assert_valid(schema: dict[str, Any], instance: Any) -> None:
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(instance)]
    assert errors == [], (errors, instance)


@pytest.mark.parametrize("schema", [TICKET_SCHEMA, FINANCE_SCHEMA, EXOTIC_SCHEMA], ids=["ticket", "finance", "exotic"])
@pytest.mark.parametrize("document", [EN_TICKET, ZH_REPORT, ""], ids=["en", "zh", "empty"])
def test_answers_are_schema_valid(schema: dict[str, Any], document: str) -> None:
    answer = answer_request(json_body(schema, document))
    assert_valid(schema, answer.instance)
    assert orjson.loads(answer.text) == answer.instance
    assert answer.tool_name is None


def test_ticket_fields_are_filled_from_the_document() -> None:
    instance = answer_request(json_body(TICKET_SCHEMA, EN_TICKET)).instance
    assert instance["booking_id"] == "ABC-12345"
    assert instance["card_number"] == "4111111111111111"
    assert instance["email"] == "jane.doe@example.com"
    assert instance["sentiment"] == "negative"
    assert instance["urgency"] == "high"
    assert instance["amount"] == 129.99
    assert instance["currency"] == "USD"
    assert instance["created_date"] == "2024-03-05"
    assert instance["summary"].startswith("I am really angry")
    assert len(instance["summary"]) <= 60


def test_chinese_report_fields_are_filled_from_the_document() -> None:
    instance = answer_request(json_body(FINANCE_SCHEMA, ZH_REPORT)).instance
    assert instance["revenue"] == 498.45
    assert instance["net_profit"] == 50.01
    assert instance["revenue_yoy_pct"] == 71.35
    assert instance["unit"] == "亿元"
    assert instance["currency"] == "CNY"
    assert instance["language"] == "zh"
    assert instance["report_period"] == "2022年三季度" or instance["report_period"].startswith("2022")
    assert instance["fiscal_year"] == 2022


def test_tools_mode_reads_the_schema_from_the_function_parameters() -> None:
    answer = answer_request(tools_body(TICKET_SCHEMA, EN_TICKET))
    assert answer.tool_name == "record_extraction"
    assert_valid(TICKET_SCHEMA, answer.instance)
    assert answer.instance["booking_id"] == "ABC-12345"


def test_no_schema_answers_the_fallback_object() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    answer = answer_request(body)
    assert jsonschema_rs.validator_for(FALLBACK_SCHEMA).is_valid(answer.instance)
    assert answer.instance["summary"] == "hello" and orjson.loads(answer.text) == answer.instance


def test_a_reask_is_answered_from_the_same_schema_and_document() -> None:
    body = json_body(TICKET_SCHEMA, EN_TICKET)
    reask = {**body, "messages": [*body["messages"],
                                  {"role": "assistant", "content": '{"oops": 1}'},
                                  {"role": "user", "content": "Your answer failed validation: ..."}]}  # fmt: skip
    assert extract_schema_text(reask["messages"]) == extract_schema_text(body["messages"])
    assert extract_document(reask["messages"]) == EN_TICKET
    assert answer_request(reask).instance == answer_request(body).instance


def test_same_content_gives_the_same_answer_and_other_content_may_differ() -> None:
    first = answer_request(json_body(FINANCE_SCHEMA, ZH_REPORT, request_id="a")).text
    again = answer_request(json_body(FINANCE_SCHEMA, ZH_REPORT, request_id="b")).text
    assert first == again
    other = answer_request(json_body(FINANCE_SCHEMA, ZH_REPORT + " 另一份文件。")).text
    assert orjson.loads(other)["revenue"] == 498.45


def test_plans_are_cached_by_schema_text() -> None:
    text = json.dumps(FINANCE_SCHEMA)
    assert plan_for_text(text) is plan_for_text(text)
    assert plan_for_text("not json") is None


def test_recursive_refs_terminate() -> None:
    plan = compile_schema(EXOTIC_SCHEMA)
    assert plan.kind == "object"


@pytest.mark.skipif(not SCHEMAS_DIR.is_dir(), reason="no bundled schemas")
def test_every_bundled_schema_gets_valid_answers() -> None:
    schema_files = sorted(SCHEMAS_DIR.glob("*/schema.json"))
    if not schema_files:
        pytest.skip("no bundled schemas yet")
    for path in schema_files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        for document in (EN_TICKET, ZH_REPORT):
            assert_valid(schema, answer_request(json_body(schema, document)).instance)
            assert_valid(schema, answer_request(tools_body(schema, document)).instance)


def test_tokens_follow_the_published_rule_of_thumb() -> None:
    assert count_text_tokens("") == 0
    assert count_text_tokens("one two three") == 4  # ceil(3 / 0.75)
    assert count_text_tokens("我们的订单") == 4  # ceil(5 / 1.5)
    assert count_text_tokens("订单 order 12345") == 5  # ceil(2 / 1.5 + 1 / 0.75 + 2 digit groups) = ceil(4.67)
    assert count_text_tokens("TrailRunner") == 3  # two words: ceil(2 / 0.75)
    assert count_text_tokens("4c1e9b2f") == 10  # c e b f: 4 words, 4 digit groups: ceil(4 / 0.75 + 4)
    assert count_text_tokens("a" * 40) == 20  # a letter run over 12 costs a token per 2 letters
    assert count_text_tokens('{"a":"b"}') == 7  # {" a ":" b "} -> 5 words
    english = "The quick brown fox jumps over the lazy dog " * 10
    assert count_text_tokens(english) == 120
    chinese = "公司实现营收同比增长" * 3
    assert count_text_tokens(chinese) == 20
    messages = [{"role": "system", "content": "one two three"}, {"role": "user", "content": "我们的订单"}]
    assert count_prompt_tokens(messages) == 4 + 4 + 4 + 4
    assert count_completion_tokens("") == 1


def test_doc_facts_rules() -> None:
    facts = DocFacts("Revenue was $1,234.5 million in fiscal 2019; on March 5, 2019 Acme Holdings Inc said")
    assert facts.find_amount("revenue") == (1234.5, "$1,234.5 million", "million")
    assert facts.find_period() == "FY2019"
    assert facts.find_date() == "2019-03-05"
    assert facts.find_company() == "Acme Holdings Inc"
    zh = DocFacts("2024年上半年公司营业收入为12.3亿元，2024年3月5日发布。我叫张三。")
    assert zh.find_period() == "2024年上半年"
    assert zh.find_date() == "2024-03-05"
    assert zh.find_person() == "张三"
    assert zh.find_currency() == "CNY"
    assert DocFacts("results for 2024Q3 are in").find_period() == "2024Q3"
    assert DocFacts("no numbers here").find_amount("") is None
