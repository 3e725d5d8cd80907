"""A rerun's ``runs`` row keeps what its answers cost when they were paid, beside what the rerun spent.

A rerun answers every row from the journal: it spends 0 CNY, but its rows carry ``_paid_cost_cny``
and ``_paid_*_tokens`` (what the answers cost on the run that paid), and its summary
``answers_cost_cny``. The warehouse must keep both bills, whether the runs row comes from the
summary or from the table alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.warehouse import export_table

MakeTable = Callable[..., Path]
Frame = Callable[..., pl.DataFrame]
Query = Callable[[str], list[tuple[object, ...]]]


def _rerun(frame: Frame) -> pl.DataFrame:
    """Four rows answered from the journal: nothing spent now, 0.002 CNY and 100+20 tokens paid each before."""
    return frame(run_id="rerun-2").with_columns(
        pl.lit(0.0).alias("_cost_cny"),
        pl.lit(0).alias("_prompt_tokens"),
        pl.lit(0).alias("_completion_tokens"),
        pl.lit(0.002).alias("_paid_cost_cny"),
        pl.lit(100).alias("_paid_prompt_tokens"),
        pl.lit(20).alias("_paid_completion_tokens"),
        pl.lit(True).alias("_from_journal"),
    )


def _runs_row(warehouse: Path) -> tuple[object, ...]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            "SELECT cost_cny, answers_cost_cny, prompt_tokens, answers_prompt_tokens, answers_completion_tokens "
            "FROM runs WHERE run_id = 'rerun-2'"
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_runs_row_from_the_summary_keeps_the_paid_bill(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    summary = {"run_id": "rerun-2", "task": "ticket_qa", "rows": 4, "cost_cny": 0.0, "answers_cost_cny": 0.008,
               "tokens": {"prompt": 0, "completion": 0}, "requests": {"sent": 0, "from_journal": 4}}
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(_rerun(frame), summary=summary), warehouse)
    cost, paid, prompt, paid_prompt, paid_completion = _runs_row(warehouse)
    assert cost == 0.0 and prompt == 0
    assert paid == pytest.approx(0.008) and (paid_prompt, paid_completion) == (400, 80)


def test_runs_row_from_the_table_keeps_the_paid_bill(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    export_table(make_table(_rerun(frame)), warehouse)
    cost, paid, prompt, paid_prompt, paid_completion = _runs_row(warehouse)
    assert cost == 0.0 and prompt == 0
    assert paid == pytest.approx(0.008) and (paid_prompt, paid_completion) == (400, 80)


def test_an_older_runs_table_gains_the_columns(frame: Frame, make_table: MakeTable, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR NOT NULL, cost_cny DOUBLE)")
        con.execute("INSERT INTO runs VALUES ('old-1', 0.5)")
    result = export_table(make_table(_rerun(frame)), warehouse)
    assert result.rows == 4
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT answers_cost_cny FROM runs WHERE run_id = 'old-1'").fetchone() == (None,)
    assert _runs_row(warehouse)[1] == pytest.approx(0.008)


@pytest.mark.postgres
def test_postgres_runs_row_keeps_the_paid_bill(
    frame: Frame, make_table: MakeTable, pg_target: str, pg_schema: str, pg_query: Query
) -> None:
    export_table(make_table(_rerun(frame)), pg_target)
    rows = pg_query(
        f"SELECT cost_cny, answers_cost_cny, answers_prompt_tokens FROM {pg_schema}.runs WHERE run_id = 'rerun-2'"
    )
    assert len(rows) == 1 and rows[0][0] == 0.0 and rows[0][1] == pytest.approx(0.008) and rows[0][2] == 400
