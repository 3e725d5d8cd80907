"""The enriched table's meta columns are defined once (``META_SCHEMA``): every per-row value comes
from the :class:`RowMeta` field of the same name and every run-wide one from :class:`RunColumns`."""

from __future__ import annotations

import dataclasses

import polars as pl

from pipeline.tables import META_SCHEMA, RUN_WIDE, RowMeta, RunColumns, assemble_shard


def test_row_meta_and_run_columns_cover_the_meta_columns_exactly() -> None:
    per_row = {f.name for f in dataclasses.fields(RowMeta)} - {"data_json"}  # data_json feeds the extraction
    run_wide = {f.name for f in dataclasses.fields(RunColumns)} - {"output_prefix"}
    assert {f"_{name}" for name in per_row} | {f"_{name}" for name in run_wide} | {"_record_id"} == set(META_SCHEMA)
    assert {f"_{name}" for name in run_wide} == RUN_WIDE


def test_each_meta_column_carries_its_own_field() -> None:
    fields = dataclasses.fields(RowMeta)
    values = {f.name: (f"v-{f.name}" if f.type in ("str", "str | None") else None) for f in fields}
    values.update(status="ok", attempts=3, reasks=1, prompt_tokens=11, completion_tokens=7, cost_cny=0.5,
                  paid_prompt_tokens=13, paid_completion_tokens=17, paid_cost_cny=0.25, latency_ms=42.0,
                  from_journal=True, packed=True, data_json='{"a": 1}')
    meta = RowMeta(**values)
    table = assemble_shard(pl.DataFrame({"id": [5]}), "id", [meta], pl.Struct({"a": pl.Int64}),
                           RunColumns("task-t", "schema-s", "version-v", "run-r"))
    row = table.row(0, named=True)
    for field in fields:
        if field.name != "data_json":
            assert row[f"_{field.name}"] == values[field.name], field.name
    assert (row["_record_id"], row["_task"], row["_schema_id"], row["_prompt_version"], row["_run_id"]) == (
        "5", "task-t", "schema-s", "version-v", "run-r")
    assert row["a"] == 1 and list(table.columns[-len(META_SCHEMA):]) == list(META_SCHEMA)
