"""Joining shard parts into the one output file: order, types and row groups kept, memory bounded."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.io import concat_parts

DTYPE = {"_record_id": pl.Utf8, "extraction": pl.Struct({"topic": pl.Utf8, "tags": pl.List(pl.Utf8)}),
         "_attempts": pl.Int32}


def part(path: Path, start: int, rows: int) -> Path:
    frame = pl.DataFrame({
        "_record_id": [f"r{i}" for i in range(start, start + rows)],
        "extraction": [{"topic": f"t{i}", "tags": [str(i)] * (i % 3)} if i % 4 else None
                       for i in range(start, start + rows)],
        "_attempts": list(range(start, start + rows)),
    }, schema=DTYPE)  # fmt: skip
    frame.write_parquet(path)
    return path


def test_parts_are_joined_in_order_with_their_types(tmp_path: Path) -> None:
    parts = [part(tmp_path / f"p{i}.parquet", 10 * i, 10) for i in range(5)]
    out = tmp_path / "out.parquet"
    concat_parts(parts, out, rows_per_group=25)
    joined = pl.read_parquet(out)
    assert joined.schema == pl.Schema(DTYPE)
    expected = pl.concat([pl.read_parquet(p) for p in parts])
    assert joined.equals(expected)
    groups = [pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(out).num_row_groups)]
    assert groups == [30, 20]  # parts are never split; a group closes once it holds ≥ 25 rows


def test_an_empty_part_gives_an_empty_typed_table(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    concat_parts([part(tmp_path / "empty.parquet", 0, 0)], out)
    joined = pl.read_parquet(out)
    assert joined.height == 0 and joined.schema == pl.Schema(DTYPE)
    assert pq.ParquetFile(out).num_row_groups == 0


def test_no_parts_is_a_bug_not_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no parts"):
        concat_parts([], tmp_path / "out.parquet")
