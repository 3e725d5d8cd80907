"""The flow's evaluation artifact: a gold column of the wrong kind is reported, never scored 0 and
never fails a run that already wrote its output."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows.reports import evaluate_output
from pipeline.tasks import load_task

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_a_json_text_gold_column_is_named_as_not_scored_and_the_rest_is_scored(tmp_path: Path) -> None:
    pl.DataFrame({
        "_status": ["ok", "ok"], "currency": ["CNY", "USD"], "gold_currency": ["CNY", "EUR"],
        "risk_factors": [["FX risk"], []], "gold_risk_factors": ['["FX risk"]', "[]"],
    }).write_parquet(tmp_path / "out.parquet")
    markdown = evaluate_output(load_task("financial_report", SCHEMAS), tmp_path / "out.parquet")
    assert markdown is not None
    assert "| `currency` | `gold_currency` | exact | 2 | 0.500 |" in markdown
    assert "`risk_factors`" not in markdown.split("Not scored:")[0]
    assert "Not scored: gold column 'gold_risk_factors' holds string values" in markdown
