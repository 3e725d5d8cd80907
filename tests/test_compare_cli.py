"""`glm-extract evaluate --compare A B [--changes PATH]` as a user runs it: numbers one can decide on
("is packing as good as unpacked?") and a changes file that never replaces anything it should not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.tables import extraction_dtype
from pipeline.tasks import load_task
from tests.reliability.support import one_error_line

BAD_INPUT_EXIT = 2
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TASK = load_task("ticket_qa", SCHEMAS)


def output(rows: list[dict[str, Any]], *, task: str = "ticket_qa", schema_id: str | None = None) -> pl.DataFrame:
    """A ticket_qa output shaped as `run` writes it: every field column (null unless given), meta columns.
    Each row: ``id``, ``status`` (default ok) and any field values."""
    dtype = extraction_dtype(TASK.schema)
    columns: dict[str, pl.Series] = {
        "ticket_id": pl.Series([r["id"] for r in rows], dtype=pl.String),
        "text": pl.Series([f"ticket {r['id']}" for r in rows], dtype=pl.String),
    }
    for field in dtype.fields:
        columns[field.name] = pl.Series(field.name, [r.get(field.name) for r in rows], dtype=field.dtype)
    columns |= {
        "_record_id": pl.Series([r["id"] for r in rows], dtype=pl.String),
        "_task": pl.Series([task] * len(rows), dtype=pl.String),
        "_status": pl.Series([r.get("status", "ok") for r in rows], dtype=pl.String),
        "_schema_id": pl.Series([schema_id or TASK.schema_id] * len(rows), dtype=pl.String),
    }
    return pl.DataFrame(columns)


def row(id_: str, category: str | None = "billing", status: str = "ok", **fields: Any) -> dict[str, Any]:
    if status != "ok":
        return {"id": id_, "status": status}
    return {"id": id_, "status": status, "issue_category": category, "sentiment": "neutral", **fields}


def write(tmp_path: Path, name: str, frame: pl.DataFrame) -> Path:
    path = tmp_path / name
    frame.write_parquet(path)
    return path


def compare(a: Path, b: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["evaluate", "--task", "ticket_qa", "--compare", str(a), str(b), *extra])
    assert result.exit_code in (0, BAD_INPUT_EXIT), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def field_line(markdown: str, field: str) -> dict[str, str]:
    """The field table's row for ``field``, keyed by the table's header."""
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| field |"))
    line = next(line for line in lines if line.startswith(f"| `{field}` |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    return dict(zip([c.strip() for c in header.strip("|").split("|")], cells, strict=True))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2", "refund")]))
    b = write(tmp_path, "b.parquet", output([row("t1"), row("t2", "billing")]))
    return a, b


def test_changes_without_compare_is_refused_not_ignored(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    target = tmp_path / "changes.parquet"
    result = CliRunner().invoke(app, ["evaluate", "--task", "ticket_qa", "-o", str(pair[0]), "--changes", str(target)])
    assert result.exit_code == BAD_INPUT_EXIT
    assert "--compare" in one_error_line(result.stderr) and not target.exists()


# --- 5. --changes never replaces what it should not ---------------------------------------------------------


@pytest.mark.parametrize("victim", ["a", "b"])
def test_changes_pointed_at_a_compared_table_is_refused(pair: tuple[Path, Path], victim: str) -> None:
    a, b = pair
    target = a if victim == "a" else b
    before = target.read_bytes()
    code, _, stderr = compare(a, b, "--changes", str(target.parent / ".." / target.parent.name / target.name))
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    assert str(target.name) in line and "--changes" in line
    assert target.read_bytes() == before


def test_changes_pointed_at_an_enriched_output_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    other = write(tmp_path, "nightly.parquet", output([row("x1")]))
    (tmp_path / "nightly.parquet.summary.json").write_text("{}")
    before = other.read_bytes()
    code, _, stderr = compare(*pair, "--changes", str(other))
    assert code == BAD_INPUT_EXIT
    assert "nightly.parquet" in one_error_line(stderr)
    assert other.read_bytes() == before


def test_changes_pointed_at_any_other_existing_table_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    data = write(tmp_path, "tickets.parquet", pl.DataFrame({"ticket_id": ["x"], "text": ["hello"]}))
    before = data.read_bytes()
    code, _, stderr = compare(*pair, "--changes", str(data))
    assert code == BAD_INPUT_EXIT
    assert "tickets.parquet" in one_error_line(stderr)
    assert data.read_bytes() == before


def test_an_earlier_changes_file_is_replaced(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    target = tmp_path / "changes.parquet"
    assert compare(*pair, "--changes", str(target))[0] == 0
    first = pl.read_parquet(target)
    code, _, stderr = compare(pair[0], pair[0], "--changes", str(target))
    assert code == 0, stderr
    assert first.height == 1 and pl.read_parquet(target).height == 0


def test_changes_in_a_missing_folder_is_one_line(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    code, _, stderr = compare(*pair, "--changes", str(tmp_path / "nodir" / "ch.parquet"))
    assert code == BAD_INPUT_EXIT
    assert "nodir" in one_error_line(stderr)


def test_changes_in_a_folder_that_cannot_be_written_is_one_line(pair: tuple[Path, Path]) -> None:
    code, _, stderr = compare(*pair, "--changes", "/proc/changes.parquet")  # /proc takes no new file, even as root
    assert code == BAD_INPUT_EXIT
    assert "/proc/changes.parquet" in one_error_line(stderr)


def test_a_failed_changes_write_leaves_the_earlier_file_whole(tmp_path: Path, pair: tuple[Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "changes.parquet"
    assert compare(*pair, "--changes", str(target))[0] == 0
    before = target.read_bytes()
    real_write = pl.DataFrame.write_parquet

    def half_then_disk_full(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        real_write(self, file, *args, **kwargs)
        with open(file, "r+b") as handle:  # half the bytes made it to disk, then the disk filled
            handle.truncate(os.path.getsize(file) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_then_disk_full)
    code, _, stderr = compare(pair[1], pair[0], "--changes", str(target))
    assert code == BAD_INPUT_EXIT
    assert "changes.parquet" in one_error_line(stderr)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "changes.parquet"]


# --- 6. numbers one can decide on -----------------------------------------------------------------------


def test_agreement_is_over_rows_ok_in_both_and_status_changes_are_counted_apart(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2"), row("t3"), row("s1", status="skipped"),
                                             row("s2", status="skipped"), row("s3", status="skipped")]))
    b = write(tmp_path, "b.parquet", output([row("t1"), row("t2", "refund"), row("t3", status="invalid"),
                                             row("s1", status="skipped"), row("s2", status="skipped"),
                                             row("s3", "other")]))
    code, stdout, stderr = compare(a, b, "--changes", str(tmp_path / "ch.parquet"))
    assert code == 0, stderr
    line = field_line(stdout, "issue_category")
    # t1 same, t2 changed; t3 (ok → invalid), s3 (skipped → ok) and the skipped pairs are not agreement
    assert (line["rows"], line["changed"], line["agreement"]) == ("2", "1", "0.500")
    assert "| ok → invalid | 1 |" in stdout and "| skipped → ok | 1 |" in stdout
    changes = pl.read_parquet(tmp_path / "ch.parquet")
    statuses = changes.filter(pl.col("field") == "_status").select("_record_id", "a", "b").sort("_record_id")
    assert statuses.rows() == [("s3", '"skipped"', '"ok"'), ("t3", '"ok"', '"invalid"')]
    values = changes.filter(pl.col("field") == "issue_category")
    assert values.get_column("_record_id").to_list() == ["t2"]  # not t3 (status) nor s3 (status)


def test_duplicated_ids_are_refused_naming_the_file_and_an_id(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2")]))
    b = write(tmp_path, "dup.parquet", output([row("t1"), row("t2"), row("t2")]))
    code, stdout, stderr = compare(a, b)
    assert code == BAD_INPUT_EXIT and "rows in both" not in stdout
    line = one_error_line(stderr)
    assert "dup.parquet" in line and "'t2'" in line


def test_rows_in_one_table_only_are_counted_and_listed(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2"), row("t3"), row("t4")]))
    b = write(tmp_path, "b.parquet", output([row("t3"), row("t4"), row("t5"), row("t6"), row("t7")]))
    code, stdout, stderr = compare(a, b, "--changes", str(tmp_path / "ch.parquet"))
    assert code == 0, stderr
    assert "Only in A: 2 rows (`t1`, `t2`)" in stdout
    assert "Only in B: 3 rows (`t5`, `t6`, `t7`)" in stdout
    only = pl.read_parquet(tmp_path / "ch.parquet").filter(pl.col("kind").str.starts_with("only"))
    assert sorted(only.select("_record_id", "kind").rows()) == [
        ("t1", "only_a"), ("t2", "only_a"), ("t5", "only_b"), ("t6", "only_b"), ("t7", "only_b")]


def test_disjoint_tables_say_so(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2")]))
    b = write(tmp_path, "b.parquet", output([row("u1"), row("u2")]))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert "0 rows in both" in stdout and "Only in A: 2 rows" in stdout and "Only in B: 2 rows" in stdout
    assert field_line(stdout, "issue_category")["agreement"] == "–"


def test_outputs_of_another_task_and_schema_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1")]))
    b = write(tmp_path, "other.parquet", output([row("t1")], task="financial_report", schema_id="sha256:0ther"))
    code, stdout, stderr = compare(a, b)
    assert code == BAD_INPUT_EXIT and "rows in both" not in stdout
    line = one_error_line(stderr)
    assert "financial_report" in line and "ticket_qa" in line and "other.parquet" in line


def test_a_copy_of_the_task_under_another_name_is_compared_and_named(tmp_path: Path) -> None:
    # packing switched on in a copy of ticket_qa (same schema): the comparison packing needs
    a = write(tmp_path, "a.parquet", output([row("t1")]))
    b = write(tmp_path, "b.parquet", output([row("t1")], task="ticket_pack"))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert "A is task `ticket_qa`, B is task `ticket_pack`" in stdout


def test_two_schema_versions_of_the_task_are_compared_and_named(tmp_path: Path) -> None:
    # the task's schema edited between two runs: what the edit changed is what --compare is for
    a = write(tmp_path, "a.parquet", output([row("t1")], schema_id="sha256:0ld"))
    b = write(tmp_path, "b.parquet", output([row("t1")]))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert f"A has schema `sha256:0ld`, B has schema `{TASK.schema_id}`" in stdout


def test_a_field_added_or_removed_by_a_schema_edit_is_named_and_the_rest_compared(tmp_path: Path) -> None:
    # the older run had no `summary` (the field was added since); the newer one has every field
    old = output([row("t1"), row("t2", "refund")], schema_id="sha256:0ld").drop("summary")
    a = write(tmp_path, "a.parquet", old)
    b = write(tmp_path, "b.parquet", output([row("t1"), row("t2", "billing")]))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert "`summary` is only in B" in stdout
    assert field_line(stdout, "issue_category")["changed"] == "1"
    assert "| `summary` |" not in stdout  # not compared: nothing on A's side
    # a table holding no field of the task is still refused
    bare = write(tmp_path, "bare.parquet", old.select("_record_id", "_status", "_task", "_schema_id"))
    code, _, stderr = compare(bare, b)
    assert code == BAD_INPUT_EXIT and "enriched table of this task" in one_error_line(stderr)


def test_a_status_change_says_why_a_row_was_not_ok(tmp_path: Path) -> None:
    # a row the budget left owed its re-ask is not a row whose answer failed the schema
    codes = pl.Series("_error_code", ["budget_reached", "schema_invalid", None])
    a = write(tmp_path, "a.parquet", output([row("t1", status="invalid"), row("t2", status="invalid"), row("t3")])
              .with_columns(codes))
    b = write(tmp_path, "b.parquet", output([row("t1"), row("t2"), row("t3")])
              .with_columns(pl.Series("_error_code", [None, None, None], dtype=pl.String)))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert "| invalid (budget_reached) → ok | 1 |" in stdout and "| invalid (schema_invalid) → ok | 1 |" in stdout


def test_a_categorical_record_id_is_compared_like_text(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1"), row("t2", "refund")]))
    frame = output([row("t1"), row("t2")])
    b = write(tmp_path, "b.parquet", frame.with_columns(pl.col("_record_id").cast(pl.Categorical)))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert (field_line(stdout, "issue_category")["rows"], field_line(stdout, "issue_category")["changed"]) == ("2", "1")


def test_entity_order_alone_is_not_a_change_but_is_counted(tmp_path: Path) -> None:
    one, two = {"type": "order_id", "value": "A1"}, {"type": "product", "value": "kettle"}
    a = write(tmp_path, "a.parquet", output([row("t1", entities=[one, two]), row("t2", entities=[one]),
                                             row("t3", entities=[one, two])]))
    b = write(tmp_path, "b.parquet", output([row("t1", entities=[two, one]), row("t2", entities=[two]),
                                             row("t3", entities=[one, two])]))
    code, stdout, stderr = compare(a, b, "--changes", str(tmp_path / "ch.parquet"))
    assert code == 0, stderr
    line = field_line(stdout, "entities")
    assert (line["rows"], line["changed"], line["reordered"], line["agreement"]) == ("3", "1", "1", "0.667")
    assert field_line(stdout, "issue_category")["reordered"] == "–"  # not a list
    kinds = pl.read_parquet(tmp_path / "ch.parquet").filter(pl.col("field") == "entities")
    assert sorted(kinds.select("_record_id", "kind").rows()) == [("t1", "order"), ("t2", "value")]


def test_another_task_without_a_recorded_schema_does_not_claim_the_same_schema(tmp_path: Path) -> None:
    a = write(tmp_path, "a.parquet", output([row("t1")]))
    b = write(tmp_path, "b.parquet", output([row("t1")], task="ticket_pack").drop("_schema_id"))
    code, stdout, stderr = compare(a, b)
    assert code == 0, stderr
    assert "B is task `ticket_pack` (schema not recorded: no _schema_id column)" in stdout
