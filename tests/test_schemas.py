"""The built-in tasks (schemas/*) and the sample data they are demonstrated and scored on."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import string
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema_rs
import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.evaluate import check_path, load_gold_spec, parse_path
from tests.conftest import REAL_DATA

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
SAMPLES = {
    "ticket_qa": ROOT / "data" / "sample" / "tickets.parquet",
    "financial_report": ROOT / "data" / "sample" / "financial_reports.parquet",
}
_REAL = REAL_DATA or ROOT / "no-real-data"
REAL_DATA_FILES = {
    "ticket_qa": _REAL / "tickets_real_en.parquet",
    "financial_report": _REAL / "financial_reports_real.parquet",
}
TASKS = sorted(SAMPLES)
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
SCALAR_TYPES = {"string", "number", "integer", "boolean"}


def load_schema(task: str) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads((SCHEMAS / task / "schema.json").read_bytes())
    return schema


def load_meta(task: str) -> dict[str, Any]:
    return tomllib.loads((SCHEMAS / task / "task.toml").read_text(encoding="utf-8"))


def load_prompt(task: str) -> str:
    return (SCHEMAS / task / "prompt.txt").read_text(encoding="utf-8")


def sample(task: str) -> pl.DataFrame:
    return pl.read_parquet(SAMPLES[task])


def walk(node: dict[str, Any], where: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node under ``node`` (itself included) with a readable location."""
    nodes = [(where, node)]
    for name, child in node.get("properties", {}).items():
        nodes += walk(child, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        nodes += walk(node["items"], f"{where}[]")
    return nodes


def types_of(node: dict[str, Any]) -> list[str]:
    declared = node["type"]
    return [declared] if isinstance(declared, str) else list(declared)


def schema_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node an output field path (``entities[].value``) points at."""
    node = schema
    for step in parse_path(path):
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


@pytest.mark.parametrize("task", TASKS)
def test_task_folder_has_exactly_the_contract_files(task: str) -> None:
    assert sorted(p.name for p in (SCHEMAS / task).iterdir()) == ["prompt.txt", "schema.json", "task.toml"]


@pytest.mark.parametrize("task", TASKS)
def test_schema_is_valid_json_schema_2020_12(task: str) -> None:
    schema = load_schema(task)
    assert schema["$schema"] == DRAFT_2020_12
    jsonschema_rs.meta.validate(schema)
    assert isinstance(jsonschema_rs.validator_for(schema), jsonschema_rs.Draft202012Validator)
    assert schema["type"] == "object"


@pytest.mark.parametrize("task", TASKS)
def test_every_property_has_a_description(task: str) -> None:
    for where, node in walk(load_schema(task)):
        description = node.get("description")
        assert isinstance(description, str), f"{where} has no description"
        assert len(description.split()) >= 3, f"{where}: say what the field means, not just its name"


@pytest.mark.parametrize("task", TASKS)
def test_every_object_is_closed_and_fully_required(task: str) -> None:
    objects = [(w, n) for w, n in walk(load_schema(task)) if "object" in types_of(n)]
    assert objects
    for where, node in objects:
        assert node.get("additionalProperties") is False, f"{where}: additionalProperties must be false"
        assert sorted(node["required"]) == sorted(node["properties"]), f"{where}: required != properties"
        assert len(node["required"]) == len(set(node["required"])), f"{where}: duplicate in required"


@pytest.mark.parametrize("task", TASKS)
def test_types_stay_flat_enough_for_typed_columns(task: str) -> None:
    """One non-null type per node (nullable via a type list), no combinators or references."""
    for where, node in walk(load_schema(task)):
        assert not {"anyOf", "oneOf", "allOf", "$ref", "not", "if"} & node.keys(), where
        kinds = [t for t in types_of(node) if t != "null"]
        assert len(kinds) == 1, f"{where}: exactly one non-null type, got {node['type']}"
        assert kinds[0] in SCALAR_TYPES | {"object", "array"}, where
        if "enum" in node:
            assert kinds == ["string"], f"{where}: enums are strings"
            assert ("null" in types_of(node)) == (None in node["enum"]), f"{where}: nullable enum lists null"
        if kinds == ["array"]:
            assert isinstance(node.get("items"), dict), f"{where}: arrays need one items schema"


@pytest.mark.parametrize("task", TASKS)
def test_task_toml_has_the_contract_keys(task: str) -> None:
    meta = load_meta(task)
    assert meta["description"].strip()
    assert meta["instructions"].strip()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\d+", meta["prompt_version"])
    assert meta["max_input_chars"] == 100_000
    columns = sample(task).columns
    assert meta["id_column"] in columns
    assert meta["text_column"] in columns


@pytest.mark.parametrize("task", TASKS)
def test_prompt_places_the_document_and_names_only_sample_columns(task: str) -> None:
    prompt, meta = load_prompt(task), load_meta(task)
    template = string.Template(prompt)
    assert template.is_valid()
    placeholders = set(template.get_identifiers())
    assert placeholders <= set(sample(task).columns)
    framed = re.search(r"<document>\s*\$\{(\w+)\}\s*</document>", prompt)
    assert framed is not None and framed.group(1) == meta["text_column"]
    assert meta["id_column"] not in placeholders, "the id would defeat content-keyed dedup of equal texts"
    lowered = (prompt + meta["instructions"]).lower()  # the template holds the row; rules the system message
    assert "chinese" in lowered and "english" in lowered


@pytest.mark.parametrize("task", TASKS)
def test_prompt_columns_exist_in_the_real_data(task: str) -> None:
    if not REAL_DATA_FILES[task].is_file():
        pytest.skip(f"{REAL_DATA_FILES[task]} not present")
    columns = pl.read_parquet_schema(REAL_DATA_FILES[task])
    assert set(string.Template(load_prompt(task)).get_identifiers()) <= set(columns)


@pytest.mark.parametrize("task", TASKS)
def test_task_loads_through_the_pipeline_loader(task: str) -> None:
    from pipeline.tasks import load_task

    spec = load_task(task, SCHEMAS)
    assert spec.id_column == load_meta(task)["id_column"]
    assert set(spec.template_columns) <= set(sample(task).columns)


@pytest.mark.parametrize("task", TASKS)
def test_gold_mapping_points_at_schema_fields_and_sample_columns(task: str) -> None:
    schema, frame = load_schema(task), sample(task)
    gold = load_gold_spec(load_meta(task))
    assert gold
    for spec in gold:
        node = schema_at(schema, spec.field)
        kinds = [t for t in types_of(node) if t != "null"]
        check_path(frame.schema, spec.column, role="gold column")
        if spec.metric == "number":
            assert kinds[0] in {"number", "integer"}, spec.field
        if spec.metric == "set_f1":
            assert kinds[0] == "array" or "[]" in spec.field, spec.field


@pytest.mark.parametrize("task", TASKS)
def test_gold_values_validate_against_the_schema(task: str) -> None:
    """Each labelled row's gold, assembled into an instance of the gold fields, is schema-valid."""
    schema, frame = load_schema(task), sample(task)
    gold_columns = [c for c in frame.columns if c.startswith("gold_")]
    assert {c.removeprefix("gold_") for c in gold_columns} <= set(schema["properties"])
    labelled = 0
    for row in frame.select(gold_columns).iter_rows(named=True):
        instance = {c.removeprefix("gold_"): v for c, v in row.items() if v is not None}
        if not instance:
            continue
        labelled += 1
        part = {
            "$schema": DRAFT_2020_12,
            "type": "object",
            "properties": {k: schema["properties"][k] for k in instance},
            "required": list(instance),
            "additionalProperties": False,
        }
        errors = [e.message for e in jsonschema_rs.validator_for(part).iter_errors(instance)]
        assert not errors, f"{instance}: {errors}"
    assert labelled >= frame.height - 3


def test_ticket_gold_is_complete_for_every_labelled_row() -> None:
    frame = sample("ticket_qa").filter(pl.col("gold_issue_category").is_not_null())
    assert frame.null_count().select(pl.col("^gold_.*$")).sum_horizontal().item() == 0
    amounts = frame.select(pl.col("gold_entities").explode().struct.unnest()).filter(pl.col("type") == "amount")
    assert amounts.height > 10
    assert amounts["currency"].str.contains(r"^[A-Z]{3}$").all()
    assert amounts["value"].str.contains(r"^\d+(\.\d+)?$").all()


def test_ticket_sample_has_the_noise_rows() -> None:
    frame = sample("ticket_qa")
    texts = frame["text"]
    assert frame.height >= 55
    assert frame["ticket_id"].is_unique().all()
    assert (texts == "").sum() == 1, "one empty text"
    assert texts.is_null().sum() == 1, "one null text"
    assert texts.str.len_chars().max() >= 15_000, "one very long thread"
    assert texts.str.contains("(?i)ignore previous instructions").sum() >= 1, "a prompt injection"
    assert texts.str.contains(r"[\x{1F300}-\x{1FAFF}]").sum() >= 3, "emoji"
    duplicated = frame.filter(texts.is_duplicated() & texts.is_not_null() & (texts != ""))
    assert duplicated.height == 2 and duplicated["ticket_id"].n_unique() == 2, "one text under two ids"
    assert set(frame["lang"]) >= {"zh", "en"}
    assert texts.str.contains("客服：").sum() >= 10 and texts.str.contains("Agent:").sum() >= 10
    assert frame.schema["created_at"] == pl.Datetime("us", "UTC")


def test_report_sample_is_bilingual_with_tables() -> None:
    frame = sample("financial_report")
    assert frame.height >= 20
    assert frame["report_id"].is_unique().all()
    assert (frame["lang"] == "zh").sum() >= 10 and (frame["lang"] == "en").sum() >= 10
    assert frame["text"].str.contains(r"\|").sum() >= 3, "tables in text form"
    assert (frame["gold_net_profit"] < 0).sum() >= 1, "a loss"
    assert frame["gold_company"].is_null().sum() >= 1, "a document that never names the company"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_files_are_in_sync_with_the_generator(tmp_path: Path) -> None:
    generator = load_generator()
    assert_frame_equal(generator.tickets_frame(), sample("ticket_qa"))
    assert_frame_equal(generator.reports_frame(), sample("financial_report"))
    first = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in generator.write_samples(tmp_path / "a")}
    again = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in generator.write_samples(tmp_path / "b")}
    assert first == again
