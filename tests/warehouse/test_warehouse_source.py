"""The enriched table as a source: contract checks and table naming."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from pipeline.warehouse import SourceError
from pipeline.warehouse.source import open_source, sanitise_identifier, table_name_for

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]


def test_open_source_describes_the_table(make_table: MakeTable) -> None:
    source = open_source(make_table(rows=3, run_id="run-7"))
    assert (source.rows, source.tasks, source.run_ids) == (3, ("ticket_qa",), ("run-7",))
    assert {"_task", "_record_id", "risk_flags"} <= set(source.columns)


def test_missing_file_and_non_parquet_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "absent.parquet")
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    with pytest.raises(SourceError, match="is not a Parquet file"):
        open_source(text)


def test_missing_identity_column_says_run_first(frame: Frame, make_table: MakeTable) -> None:
    with pytest.raises(SourceError, match=r"has no _record_id column: not an enriched table: run `glm-extract run`"):
        open_source(make_table(frame().drop("_record_id")))


def test_duplicate_identity_is_refused(frame: Frame, make_table: MakeTable) -> None:
    data = frame()
    with pytest.raises(SourceError, match=r"2 rows for \(_task, _record_id\) = \('ticket_qa', 't-0'\)"):
        open_source(make_table(pl.concat([data, data.head(1)])))


def test_null_identity_is_refused(frame: Frame, make_table: MakeTable) -> None:
    data = frame().with_columns(
        pl.when(pl.col("ticket_id") == "t-1").then(None).otherwise(pl.col("_record_id")).alias("_record_id")
    )
    with pytest.raises(SourceError, match="1 rows with a null _task or _record_id"):
        open_source(make_table(data))


def test_table_name_is_the_task_unless_overridden(make_table: MakeTable) -> None:
    source = open_source(make_table(task="Financial-Report"))
    assert table_name_for(source, None, None) == "financial_report"
    assert table_name_for(source, "My Table", None) == "my_table"
    with pytest.raises(SourceError, match="reserved"):
        table_name_for(source, "runs", None)


def test_two_tasks_need_a_table_name(frame: Frame, make_table: MakeTable) -> None:
    mixed = pl.concat([frame(task="a"), frame(task="b")])
    source = open_source(make_table(mixed))
    with pytest.raises(SourceError, match=r"holds 2 tasks.*pass --table"):
        table_name_for(source, None, None)
    assert table_name_for(source, "both", None) == "both"


def test_empty_table_takes_the_summary_task(frame: Frame, make_table: MakeTable) -> None:
    source = open_source(make_table(frame().head(0)))
    assert table_name_for(source, None, "ticket_qa") == "ticket_qa"
    with pytest.raises(SourceError, match="no rows and no summary"):
        table_name_for(source, None, None)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("ticket_qa", "ticket_qa"), ("9lives", "t_9lives"), ("  Bid Docs! ", "bid_docs"), ("标书", "task")],
)
def test_sanitise_identifier(raw: str, clean: str) -> None:
    assert sanitise_identifier(raw) == clean
