"""`glm-extract evaluate` as a user points it at their own labels, and `--compare` of two outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.reliability.support import one_error_line

BAD_INPUT_EXIT = 2


def enriched(rows: list[dict[str, Any]], **extra: pl.DataType) -> pl.DataFrame:
    """A small ticket_qa output: id, the fields under test, status."""
    schema: dict[str, Any] = {"ticket_id": pl.String, "_record_id": pl.String, "issue_category": pl.String,
                              "sentiment": pl.String, "entities": pl.List(pl.Struct({"type": pl.String,
                                                                                     "value": pl.String})),
                              "_status": pl.String, **extra}
    return pl.DataFrame(rows, schema=schema, orient="row")


ROWS = [
    {"ticket_id": "t1", "_record_id": "t1", "issue_category": "billing", "sentiment": "negative",
     "entities": [{"type": "order_id", "value": "A1"}], "_status": "ok"},
    {"ticket_id": "t2", "_record_id": "t2", "issue_category": "refund", "sentiment": "neutral",
     "entities": [], "_status": "ok"},
    {"ticket_id": "t3", "_record_id": "t3", "issue_category": None, "sentiment": None, "entities": None,
     "_status": "failed"},
]


def evaluate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["evaluate", "--task", "ticket_qa", *args])
    assert result.exit_code in (0, BAD_INPUT_EXIT), result.exception
    return result.exit_code, result.stdout, result.stderr


def score_line(markdown: str, field: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| `{field}`"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_gold_mapping_points_a_field_at_a_column_of_another_name(tmp_path: Path) -> None:
    table = enriched(ROWS).with_columns(pl.Series("label", ["billing", "billing", "refund"]))
    table.write_parquet(tmp_path / "out.parquet")
    code, stdout, stderr = evaluate("--output", str(tmp_path / "out.parquet"), "--gold", "issue_category=label")
    # ticket_qa's [gold] names gold_* columns this table lacks: --gold scores only the fields it names
    assert code == 0, stderr
    assert score_line(stdout, "issue_category")[1:] == ["`label`", "exact", "2", "0.500"]  # t2 wrong, t3 not ok
    assert "| `sentiment`" not in stdout and "not scored: `sentiment`" in stdout

    code, _, stderr = evaluate("--output", str(tmp_path / "out.parquet"))  # the task's whole [gold]
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    for missing in ("gold_sentiment", "gold_resolution_status", "gold_risk_flags", "gold_entities", "gold_language"):
        assert missing in line, line  # every missing column at once, not the first one only


def only_mapped_task(tmp_path: Path) -> Path:
    """A copy of ticket_qa whose [gold] is empty, so only --gold entries are scored."""
    import shutil

    folder = tmp_path / "schemas" / "ticket_qa"
    shutil.copytree(Path(__file__).resolve().parent.parent / "schemas" / "ticket_qa", folder)
    toml = (folder / "task.toml").read_text()
    (folder / "task.toml").write_text(toml[: toml.index("[gold]")])
    return tmp_path / "schemas"


def test_scores_from_a_gold_file_joined_on_the_id(tmp_path: Path) -> None:
    schemas = only_mapped_task(tmp_path)
    enriched(ROWS).write_parquet(tmp_path / "out.parquet")
    pl.DataFrame({"ticket_id": ["t2", "t1", "t3"], "cat": ["refund", "complaint", "refund"],
                  "ents": [[], ["A1"], None]}).write_parquet(tmp_path / "labels.parquet")
    code, stdout, stderr = evaluate("--schemas-dir", str(schemas), "--output", str(tmp_path / "out.parquet"),
                                    "--gold-file", str(tmp_path / "labels.parquet"),
                                    "--gold", "issue_category=cat", "--gold", "entities[].value=ents")
    assert code == 0, stderr
    assert score_line(stdout, "issue_category")[3:] == ["2", "0.500"]  # t1 wrong, t2 right, t3 not ok
    assert score_line(stdout, "entities[].value")[3:] == ["2", "1.000"]


def test_a_set_metric_against_a_json_string_gold_is_refused_not_scored_zero(tmp_path: Path) -> None:
    table = pl.DataFrame({
        "report_id": ["r1", "r2"], "_record_id": ["r1", "r2"], "_status": ["ok", "ok"],
        "risk_factors": [["FX risk"], []],
        "gold_risk_factors": ['["FX risk"]', "[]"],  # JSON text, as a CSV round trip leaves it
    })
    table.write_parquet(tmp_path / "out.parquet")
    result = CliRunner().invoke(app, ["evaluate", "--task", "financial_report", "--output",
                                      str(tmp_path / "out.parquet"), "--gold", "risk_factors=gold_risk_factors",
                                      "--gold", "company=gold_company"])
    assert result.exit_code == BAD_INPUT_EXIT and "0.000" not in result.stdout
    line = one_error_line(result.stderr)
    assert ("gold column 'gold_risk_factors' holds string values, which metric set_f1 cannot score "
            "(it compares list) (JSON text? decode it into a list column first)") in line
    assert "unknown gold column 'gold_company'" in line  # and the other problems, in the same line


@pytest.fixture
def full_outputs(tmp_path: Path) -> tuple[Path, Path]:
    """Two real-shaped ticket_qa outputs: every field column, from the task's own schema."""
    from pipeline.tables import extraction_dtype
    from pipeline.tasks import load_task

    task = load_task("ticket_qa", Path(__file__).resolve().parent.parent / "schemas")
    dtype = extraction_dtype(task.schema)
    base = pl.DataFrame({"ticket_id": ["t1", "t2", "t3"], "_record_id": ["t1", "t2", "t3"],
                         "_status": ["ok", "ok", "ok"]})
    nulls = [pl.lit(None, dtype=f.dtype).alias(f.name) for f in dtype.fields]
    a = base.with_columns(nulls).with_columns(pl.Series("issue_category", ["billing", "refund", "other"]))
    b = a.with_columns(pl.Series("issue_category", ["billing", "billing", "shipping"]))
    a.write_parquet(tmp_path / "a.parquet")
    b.write_parquet(tmp_path / "b.parquet")
    return tmp_path / "a.parquet", tmp_path / "b.parquet"


def test_compare_two_outputs_of_the_task(tmp_path: Path, full_outputs: tuple[Path, Path]) -> None:
    a, b = full_outputs
    code, stdout, stderr = evaluate("--compare", str(a), str(b), "--changes", str(tmp_path / "changes.parquet"))
    assert code == 0, stderr
    # rows, changed, reordered (– : not a list), agreement
    assert score_line(stdout, "issue_category")[1:5] == ["3", "2", "–", "0.333"]
    assert score_line(stdout, "sentiment")[1:5] == ["3", "0", "–", "1.000"]
    assert "| `t2` | `issue_category` | \"refund\" | \"billing\" |" in stdout
    changes = pl.read_parquet(tmp_path / "changes.parquet")
    assert changes.select("_record_id", "field").rows() == [("t2", "issue_category"), ("t3", "issue_category")]
