"""Arrow → PostgreSQL types and CSV for COPY (pure: no server needed)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import orjson
import pyarrow as pa
import pytest

from pipeline.warehouse import SourceError
from pipeline.warehouse.pg_copy import batch_to_csv
from pipeline.warehouse.pg_types import pg_type


@pytest.mark.parametrize(
    ("arrow", "pg"),
    [
        (pa.large_string(), "text"),
        (pa.string_view(), "text"),
        (pa.int64(), "bigint"),
        (pa.int32(), "integer"),
        (pa.float64(), "double precision"),
        (pa.bool_(), "boolean"),
        (pa.date32(), "date"),
        (pa.timestamp("us", tz="UTC"), "timestamp with time zone"),
        (pa.timestamp("us"), "timestamp without time zone"),
        (pa.decimal128(10, 2), "numeric(10,2)"),
        (pa.struct([("a", pa.int64())]), "jsonb"),
        (pa.large_list(pa.string()), "jsonb"),
        (pa.dictionary(pa.int32(), pa.string()), "text"),
        (pa.null(), "text"),
    ],
)
def test_pg_type(arrow: pa.DataType, pg: str) -> None:
    assert pg_type(arrow) == pg


def test_unsupported_type_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="cannot export Arrow type"):
        pg_type(pa.duration("s"))
    assert pg_type(pa.binary()) == pg_type(pa.large_binary()) == "bytea"


def test_csv_keeps_null_apart_from_empty_and_encodes_nested_as_json() -> None:
    batch = pa.record_batch(
        {
            "s": pa.array(["a", "", None, 'q"u,o\nte'], pa.large_string()),
            "n": pa.array([1, None, 3, 4], pa.int64()),
            "st": pa.array([{"k": dt.date(2026, 1, 2)}, None, {"k": None}, {"k": dt.date(2026, 1, 3)}]),
            "l": pa.array([[{"type": "p"}], [], None, [{"type": "o"}]]),
        }
    )
    text = batch_to_csv(batch).data.decode()
    raw_lines = text.splitlines()
    assert raw_lines[1].startswith('"",,')  # empty string quoted, null bare
    assert raw_lines[2].startswith(",3,")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "a" and rows[3][0] == 'q"u,o\nte'
    assert orjson.loads(rows[0][2]) == {"k": "2026-01-02"}
    assert orjson.loads(rows[0][3]) == [{"type": "p"}]
    assert rows[1][2] == "" and rows[1][3] == "[]"
