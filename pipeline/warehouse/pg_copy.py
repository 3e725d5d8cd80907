"""Arrow record batches → CSV bytes for PostgreSQL ``COPY … FROM STDIN (FORMAT csv)`` (pure).

Scalars are written by Arrow's C++ CSV writer (strings always quoted, nulls as empty fields, which
is exactly how PostgreSQL's CSV format tells NULL from the empty string). Nested values are JSON
text encoded with orjson, loaded into ``jsonb`` columns; they are the only values that pass
through Python objects. Floats and timestamps round-trip exactly.

NUL characters (U+0000) are removed: PostgreSQL ``text`` cannot hold them and ``jsonb`` refuses the
``\u0000`` escape, so one NUL in one document would fail the whole COPY. The rule is removal (not a
visible replacement), in plain strings and in every string inside a nested value; the rows and
columns it touched are returned with the CSV so the export can name them. A text that merely spells
a backslash followed by ``u0000`` is left alone. Identity columns are the exception: removing a NUL
from ``n\\x003`` would make it the record ``n3``, another document, so :func:`nul_identity` refuses
the export instead, naming the row. Binary columns are ``bytea``, written in its hex form (``\\x…``);
bytes are not text, so a zero byte in them is kept.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.warehouse.errors import SourceError
from pipeline.warehouse.pg_types import is_binary, is_nested

_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=8192)
NUL = "\x00"
_JSON_NUL = "\\u0000"


@dataclass(frozen=True)
class CsvChunk:
    """One batch as CSV, and where NUL characters were removed (row positions in the batch)."""

    data: bytes
    nul_rows: tuple[int, ...] = ()
    nul_columns: tuple[str, ...] = ()


def batch_to_csv(batch: pa.RecordBatch) -> CsvChunk:
    """One batch as headerless CSV rows, nested columns as JSON, columns in the batch's order, NUL removed."""
    columns: list[pa.Array] = []
    hit_rows: set[int] = set()
    hit_columns: list[str] = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        ready, hits = _csv_ready(column)
        columns.append(ready)
        if hits:
            hit_rows.update(hits)
            hit_columns.append(name)
    table = pa.Table.from_arrays(columns, names=batch.schema.names)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=_WRITE_OPTIONS)
    return CsvChunk(bytes(sink.getvalue().to_pybytes()), tuple(sorted(hit_rows)), tuple(hit_columns))


def nul_identity(batch: pa.RecordBatch, key: tuple[str, ...]) -> None:
    """Refuse a batch whose identity (``key`` columns) holds a NUL character, naming the first such row."""
    for name in key:
        column = batch.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        found = pc.fill_null(pc.match_substring(column, NUL), False)
        hits = pc.indices_nonzero(found).to_pylist()
        if hits:
            row = {k: batch.column(k)[hits[0]].as_py() for k in key}
            more = f" (and {len(hits) - 1} more row(s) of this batch)" if len(hits) > 1 else ""
            raise SourceError(
                f"the row ({', '.join(f'{k} {v!r}' for k, v in row.items())}) has a NUL character in {name}{more}: "
                "PostgreSQL cannot store it, and removing it could make the identity another record's; "
                "remove NUL characters from the input's id column and run again; nothing was written"
            )


def _csv_ready(column: pa.Array) -> tuple[pa.Array, list[int]]:
    """The column as the CSV writer takes it, and the rows whose NUL characters were removed."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _csv_ready(column.cast(kind.value_type))
    if is_nested(kind):
        return _to_json(column)
    if is_binary(kind):
        return _to_bytea(column), []
    if pa.types.is_string_view(kind):
        column = column.cast(pa.large_string())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _strip_nul(column)
    return column, []


def _strip_nul(column: pa.Array) -> tuple[pa.Array, list[int]]:
    found = pc.match_substring(column, NUL)
    if not pc.any(found).as_py():
        return column, []
    rows = pc.indices_nonzero(pc.fill_null(found, False)).to_pylist()
    return pc.replace_substring(column, NUL, ""), [int(r) for r in rows]


def _to_bytea(column: pa.Array) -> pa.Array:
    """Bytes as PostgreSQL's hex ``bytea`` input (``\\x00ff``); null stays null."""
    return pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], type=pa.large_string())


def _to_json(column: pa.Array) -> tuple[pa.Array, list[int]]:
    values: list[str | None] = []
    hits: list[int] = []
    for row, value in enumerate(column.to_pylist()):
        text = None if value is None else orjson.dumps(value, default=_json_default).decode()
        if text is not None and _JSON_NUL in text:  # rare: re-encode without NUL, if there really was one
            cleaned = _without_nul(value)
            if cleaned != value:
                text = orjson.dumps(cleaned, default=_json_default).decode()
                hits.append(row)
        values.append(text)
    return pa.array(values, type=pa.large_string()), hits


def _without_nul(value: Any) -> Any:
    """``value`` with NUL removed from every string in it (keys included)."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """What orjson cannot encode natively: decimals as numbers' text, bytes as hex, durations as seconds."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
