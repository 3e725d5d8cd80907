"""Arrow types → PostgreSQL column types (pure), spelled as ``format_type()`` prints them.

Scalars keep their types; anything nested (struct, list, map) becomes ``jsonb`` — PostgreSQL has
no struct type an analyst can query easily, while ``jsonb`` answers ``->``/``->>`` and indexes.
A column of nulls only (Arrow ``null``) is ``text`` and matches any existing type. Binary is
``bytea``. A type with no mapping (a duration, say) is refused naming its column.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.warehouse.errors import SourceError

JSONB = "jsonb"
_SIMPLE: tuple[tuple[pa.DataType, str], ...] = (
    (pa.bool_(), "boolean"),
    (pa.int8(), "smallint"),
    (pa.int16(), "smallint"),
    (pa.int32(), "integer"),
    (pa.int64(), "bigint"),
    (pa.uint8(), "smallint"),
    (pa.uint16(), "integer"),
    (pa.uint32(), "bigint"),
    (pa.uint64(), "numeric(20,0)"),
    (pa.float16(), "real"),
    (pa.float32(), "real"),
    (pa.float64(), "double precision"),
    (pa.date32(), "date"),
    (pa.date64(), "date"),
    (pa.null(), "text"),
)


def pg_columns(schema: pa.Schema) -> dict[str, str]:
    """Each column's PostgreSQL type; :class:`SourceError` naming the first column we cannot load."""
    columns: dict[str, str] = {}
    for field in schema:
        try:
            columns[field.name] = pg_type(field.type)
        except SourceError as exc:
            raise SourceError(f"column {field.name!r}: {exc}; nothing was written") from exc
    return columns


def pg_type(arrow: pa.DataType) -> str:
    """The PostgreSQL type storing ``arrow``; :class:`SourceError` for types we cannot load."""
    if pa.types.is_dictionary(arrow):
        return pg_type(arrow.value_type)
    if is_nested(arrow):
        return JSONB
    if _is_text(arrow):
        return "text"
    if is_binary(arrow):
        return "bytea"
    for candidate, name in _SIMPLE:
        if arrow == candidate:
            return name
    return _temporal_or_decimal(arrow)


def is_nested(arrow: pa.DataType) -> bool:
    """Struct, list of any kind, or map: stored as ``jsonb``."""
    return bool(
        pa.types.is_struct(arrow)
        or pa.types.is_list(arrow)
        or pa.types.is_large_list(arrow)
        or pa.types.is_fixed_size_list(arrow)
        or pa.types.is_list_view(arrow)
        or pa.types.is_large_list_view(arrow)
        or pa.types.is_map(arrow)
    )


def is_binary(arrow: pa.DataType) -> bool:
    """Any Arrow binary type: stored as ``bytea``."""
    return bool(
        pa.types.is_binary(arrow)
        or pa.types.is_large_binary(arrow)
        or pa.types.is_fixed_size_binary(arrow)
        or pa.types.is_binary_view(arrow)
    )


def _is_text(arrow: pa.DataType) -> bool:
    return bool(pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow))


def _temporal_or_decimal(arrow: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow):
        return "timestamp with time zone" if arrow.tz else "timestamp without time zone"
    if pa.types.is_time(arrow):
        return "time without time zone"
    if pa.types.is_decimal(arrow):
        return f"numeric({arrow.precision},{arrow.scale})"
    raise SourceError(f"cannot export Arrow type {arrow} to PostgreSQL: cast the column to a string first")
