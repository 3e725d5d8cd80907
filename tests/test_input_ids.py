"""The id check on inputs: every id present and unique, across all files, at any size."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import InputError
from pipeline.io import check_input


def write(path: Path, ids: list[object], dtype: pl.DataType) -> Path:
    pl.DataFrame({"ticket_id": pl.Series(ids, dtype=dtype), "text": ["t"] * len(ids)}).write_parquet(path)
    return path


def check(files: list[Path]) -> None:
    check_input(files, id_column="ticket_id", text_column="text", needed=["text"])


def test_a_duplicate_across_files_is_named_with_its_global_row(tmp_path: Path) -> None:
    files = [write(tmp_path / "a.parquet", ["x", "y"], pl.String()),
             write(tmp_path / "b.parquet", ["z", "y"], pl.String())]
    with pytest.raises(InputError, match=r"duplicate value 'y' at row 1 of \S+a.parquet and row 1 of \S+b.parquet"):
        check(files)


def test_integer_ids_and_a_null_in_the_second_file(tmp_path: Path) -> None:
    files = [write(tmp_path / "a.parquet", [1, 2, 3], pl.Int64()), write(tmp_path / "b.parquet", [4, None], pl.Int64())]
    with pytest.raises(InputError, match=r"is null at row 1 of \S+b.parquet"):
        check(files)


def test_many_unique_ids_pass(tmp_path: Path) -> None:
    ids = [f"t-{i:07d}" for i in range(200_000)]
    check([write(tmp_path / "big.parquet", ids, pl.String())])
    with pytest.raises(InputError, match=r"duplicate value 't-0000007' at row 7 of \S+dup.parquet and row 200000 of"):
        check([write(tmp_path / "dup.parquet", [*ids, "t-0000007"], pl.String())])
