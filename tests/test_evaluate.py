"""Field-level scoring against gold columns (pipeline/evaluate.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.evaluate import (
    Evaluation,
    FieldScore,
    GoldField,
    load_gold_spec,
    parse_path,
    render_markdown,
    score_exact,
    score_number,
    score_set_f1,
    score_table,
)

ROOT = Path(__file__).resolve().parent.parent

FLAGS = pl.Struct({"churn_risk": pl.Boolean, "abusive_language": pl.Boolean})
ENTITIES = pl.List(pl.Struct({"type": pl.String, "value": pl.String}))


def frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={**schema, "_status": pl.String}, orient="row")


def only(evaluation: Evaluation) -> FieldScore:
    (score,) = evaluation.fields
    return score


def test_exact_is_case_and_space_insensitive_and_a_wrong_answer_lowers_the_score() -> None:
    table = frame(
        [
            {"category": "billing", "gold": "billing", "_status": "ok"},
            {"category": " Billing ", "gold": "billing", "_status": "ok"},
            {"category": "ORDER STATUS", "gold": "order status", "_status": "ok"},
            {"category": "refund", "gold": "billing", "_status": "ok"},
        ],
        {"category": pl.String, "gold": pl.String},
    )
    result = score_table(table, [GoldField("category", "gold", "exact")])
    assert only(result) == FieldScore("category", "gold", "exact", rows=4, score=0.75)
    assert result.macro == 0.75


def test_only_ok_rows_with_gold_are_scored() -> None:
    table = frame(
        [
            {"category": "billing", "gold": "billing", "_status": "ok"},
            {"category": None, "gold": "billing", "_status": "failed"},
            {"category": None, "gold": "refund", "_status": "skipped"},
            {"category": "refund", "gold": None, "_status": "ok"},
            {"category": None, "gold": "refund", "_status": "ok"},
        ],
        {"category": pl.String, "gold": pl.String},
    )
    result = score_table(table, [GoldField("category", "gold", "exact")])
    assert (result.rows, result.rows_ok) == (5, 3)
    assert only(result).rows == 2
    assert only(result).score == 0.5, "an ok row that left the field null counts as wrong"


def test_number_allows_one_percent_of_gold() -> None:
    table = frame(
        [
            {"revenue": 100.9, "gold": 100.0, "_status": "ok"},
            {"revenue": 98.9, "gold": 100.0, "_status": "ok"},
            {"revenue": -3.26, "gold": -3.26, "_status": "ok"},
            {"revenue": 0.0, "gold": 0.0, "_status": "ok"},
        ],
        {"revenue": pl.Float64, "gold": pl.Float64},
    )
    assert only(score_table(table, [GoldField("revenue", "gold", "number")])).score == 0.75
    assert score_number("1,234.5", 1234.5) == 1.0
    assert score_number(None, 1.0) == 0.0
    assert score_number(True, 1.0) == 0.0


def test_contains_finds_the_gold_text_in_the_answer() -> None:
    table = frame(
        [
            {"company": "Northwind Robotics Inc.", "gold": "northwind robotics", "_status": "ok"},
            {"company": "星河光能股份有限公司", "gold": "星河光能", "_status": "ok"},
            {"company": "Northwind", "gold": "Northwind Robotics", "_status": "ok"},
            {"company": None, "gold": "Acme", "_status": "ok"},
        ],
        {"company": pl.String, "gold": pl.String},
    )
    assert only(score_table(table, [GoldField("company", "gold", "contains")])).score == 0.5


def test_set_f1_gives_partial_credit() -> None:
    table = frame(
        [
            {"risks": ["FX volatility", "supply chain"], "gold": ["fx volatility", "Supply Chain"], "_status": "ok"},
            {"risks": ["a", "c"], "gold": ["a", "b"], "_status": "ok"},
            {"risks": [], "gold": [], "_status": "ok"},
            {"risks": None, "gold": ["a"], "_status": "ok"},
        ],
        {"risks": pl.List(pl.String), "gold": pl.List(pl.String)},
    )
    score = only(score_table(table, [GoldField("risks", "gold", "set_f1")]))
    assert score.rows == 4
    assert score.score == pytest.approx((1.0 + 0.5 + 1.0 + 0.0) / 4)
    assert score_set_f1(["a", "b", "c"], ["a"]) == pytest.approx(0.5)


def test_dotted_paths_read_struct_fields_and_list_items() -> None:
    table = frame(
        [
            {
                "risk_flags": {"churn_risk": True, "abusive_language": False},
                "entities": [{"type": "order_id", "value": "A-1"}, {"type": "amount", "value": "59.99"}],
                "gold_flags": {"churn_risk": True, "abusive_language": True},
                "gold_entities": [{"type": "order_id", "value": "a-1"}],
                "_status": "ok",
            },
            {
                "risk_flags": {"churn_risk": False, "abusive_language": False},
                "entities": [],
                "gold_flags": {"churn_risk": True, "abusive_language": False},
                "gold_entities": [],
                "_status": "ok",
            },
        ],
        {"risk_flags": FLAGS, "entities": ENTITIES, "gold_flags": FLAGS, "gold_entities": ENTITIES},
    )
    gold = [
        GoldField("risk_flags.churn_risk", "gold_flags.churn_risk", "exact"),
        GoldField("risk_flags.abusive_language", "gold_flags.abusive_language", "exact"),
        GoldField("entities[].value", "gold_entities[].value", "set_f1"),
    ]
    result = score_table(table, gold)
    assert [f.score for f in result.fields] == [0.5, 0.5, pytest.approx((2 / 3 + 1.0) / 2)]
    assert result.macro == pytest.approx((0.5 + 0.5 + 5 / 6) / 3)


def test_null_gold_struct_skips_the_row() -> None:
    table = frame(
        [
            {"risk_flags": {"churn_risk": True, "abusive_language": False}, "gold_flags": None, "_status": "ok"},
            {"risk_flags": {"churn_risk": True, "abusive_language": False},
             "gold_flags": {"churn_risk": True, "abusive_language": None}, "_status": "ok"},
        ],
        {"risk_flags": FLAGS, "gold_flags": FLAGS},
    )
    result = score_table(table, [
        GoldField("risk_flags.churn_risk", "gold_flags.churn_risk", "exact"),
        GoldField("risk_flags.abusive_language", "gold_flags.abusive_language", "exact"),
    ])
    assert [(f.rows, f.score) for f in result.fields] == [(1, 1.0), (0, None)]
    assert result.macro == 1.0, "a field with no scored row stays out of the macro mean"


def test_exact_normalises_full_width_and_keeps_types() -> None:
    assert score_exact("ＣＮＹ", "cny") == 1.0
    assert score_exact(False, False) == 1.0
    assert score_exact(None, False) == 0.0
    assert score_exact(3.0, 3) == 1.0


@pytest.mark.parametrize(
    ("gold", "message"),
    [
        (GoldField("category", "gold_missing", "exact"), "unknown gold column 'gold_missing'"),
        (GoldField("missing", "gold", "exact"), "unknown output field 'missing'"),
        (GoldField("category", "gold.sub", "exact"), "not a struct"),
        (GoldField("category", "gold[]", "exact"), "not a list"),
    ],
)
def test_bad_paths_raise_value_errors_naming_them(gold: GoldField, message: str) -> None:
    table = frame([{"category": "a", "gold": "a", "_status": "ok"}], {"category": pl.String, "gold": pl.String})
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        score_table(table, [gold])


def test_unknown_struct_field_is_named() -> None:
    table = frame([{"f": {"churn_risk": True, "abusive_language": False}}], {"f": FLAGS})
    with pytest.raises(ValueError, match="no field 'churn'"):
        score_table(table, [GoldField("f.churn_risk", "f.churn", "exact")])


def test_a_table_without_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="_status"):
        score_table(pl.DataFrame({"a": ["x"]}), [GoldField("a", "a", "exact")])


def test_load_gold_spec_reads_the_task_toml_table() -> None:
    meta = tomllib.loads(
        """
        id_column = "id"
        [gold]
        issue_category = { column = "gold_issue_category", metric = "exact" }
        "entities[].value" = { column = "gold_entities[].value", metric = "set_f1" }
        summary = { column = "gold_summary" }
        """
    )
    assert load_gold_spec(meta) == (
        GoldField("issue_category", "gold_issue_category", "exact"),
        GoldField("entities[].value", "gold_entities[].value", "set_f1"),
        GoldField("summary", "gold_summary", "exact"),
    )
    assert load_gold_spec({"id_column": "id"}) == ()


@pytest.mark.parametrize(
    ("gold", "message"),
    [
        ({"a": {"column": "g", "metric": "fuzzy"}}, "unknown metric 'fuzzy'"),
        ({"a": {"metric": "exact"}}, "'column' must be a string"),
        ({"a": "gold_a"}, "expected"),
        ({"a..b": {"column": "g"}}, "bad field path 'a..b'"),
        ({"a": {"column": "g[0]"}}, "bad field path 'g\\[0\\]'"),
    ],
)
def test_load_gold_spec_rejects_bad_entries(gold: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_gold_spec({"gold": gold})


def test_parse_path_splits_steps() -> None:
    assert parse_path("entities[].value") == ("entities", "[]", "value")
    assert parse_path("risk_flags.churn_risk") == ("risk_flags", "churn_risk")
    assert parse_path("风险") == ("风险",)


def test_render_markdown_lists_fields_and_macro() -> None:
    evaluation = Evaluation(
        rows=10,
        rows_ok=8,
        fields=(
            FieldScore("issue_category", "gold_issue_category", "exact", rows=8, score=0.875),
            FieldScore("entities[].value", "gold_entities[].value", "set_f1", rows=0, score=None),
        ),
        macro=0.875,
    )
    lines = render_markdown(evaluation).splitlines()
    assert lines[0] == "Scored 8 ok rows of 10."
    assert lines[2] == "| field | gold column | metric | rows | score |"
    assert "| `issue_category` | `gold_issue_category` | exact | 8 | 0.875 |" in lines
    assert "| `entities[].value` | `gold_entities[].value` | set_f1 | 0 | – |" in lines
    assert lines[-1] == "| **macro** | | | | **0.875** |"


@pytest.mark.parametrize(
    ("task", "sample"),
    [("ticket_qa", "tickets.parquet"), ("financial_report", "financial_reports.parquet")],
)
def test_builtin_gold_scores_perfect_answers_as_one(task: str, sample: str) -> None:
    """Copy every gold column into its output column: each mapped field must score 1.0."""
    meta = tomllib.loads((ROOT / "schemas" / task / "task.toml").read_text(encoding="utf-8"))
    inputs = pl.read_parquet(ROOT / "data" / "sample" / sample)
    answers = [pl.col(c).alias(c.removeprefix("gold_")) for c in inputs.columns if c.startswith("gold_")]
    blank = pl.col(meta["text_column"]).str.strip_chars().fill_null("") == ""
    status = pl.when(blank).then(pl.lit("skipped")).otherwise(pl.lit("ok"))
    table = inputs.with_columns(*answers, status.alias("_status"))
    result = score_table(table, load_gold_spec(meta))
    assert result.rows_ok == table.height - table["_status"].eq("skipped").sum()
    assert result.rows_ok > 20
    assert all(f.rows > 0 and f.score == 1.0 for f in result.fields), result.fields
    assert result.macro == 1.0
