"""One Arrow schema for Parquet files written by different tools (pure).

polars writes ``large_string``, pyarrow, pandas and Spark ``string``; one writer picks ``int32``
where another picks ``int64``; column order and nullability differ; a later export adds a column.
Files are matched by column name and read as one table: a type is widened only where no value
changes, a column some files lack is null in their rows, and only a real conflict (text in one
file, numbers in another) is refused, naming both files. A dictionary-encoded column (pandas
``category``, polars ``Categorical``) is read as its values: the same strings, so the same prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.errors import InputError


def unify_schemas(schemas: Sequence[tuple[Path, pa.Schema]]) -> pa.Schema:
    """One schema for all files: columns by name (first file's order, then columns only later files
    have), every column nullable, dictionaries decoded (:func:`decoded`). A real type conflict raises
    :class:`InputError` naming both files."""
    fields: dict[str, pa.Field] = {}
    origin: dict[str, Path] = {}
    for path, schema in schemas:
        if len(set(schema.names)) != len(schema.names):
            twice = next(n for n in schema.names if schema.names.count(n) > 1)
            raise InputError(f"{path}: column {twice!r} appears twice")
        for column in (field.with_type(decoded(field.type)) for field in schema):
            if column.name not in fields:
                fields[column.name], origin[column.name] = column.with_nullable(True), path
                continue
            merged = unify_types(fields[column.name].type, column.type)
            if merged is None:
                raise InputError(f"{path}: column {column.name!r} has type {column.type}, but "
                                 f"{origin[column.name]} has {fields[column.name].type}")
            fields[column.name] = fields[column.name].with_type(merged)
    return pa.schema(list(fields.values()))


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both ``a`` and ``b`` convert to without changing a value, or None."""
    if a.equals(b):
        return a
    if pa.types.is_null(a) or pa.types.is_null(b):
        return b if pa.types.is_null(a) else a
    for family, widen in _FAMILIES:
        if family(a) and family(b):
            return widen(a, b)
    return None


def decoded(kind: pa.DataType) -> pa.DataType:
    """A dictionary type's value type (``dictionary<int32, string>`` → ``string``); any other as it is."""
    return decoded(kind.value_type) if pa.types.is_dictionary(kind) else kind


def unreadable_part(kind: pa.DataType) -> pa.DataType | None:
    """The part of ``kind`` polars cannot read (it panics or refuses: ``decimal256`` of any precision,
    ``list_view``), at any depth, or None."""
    if pa.types.is_decimal256(kind) or pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind):
        return kind
    if pa.types.is_dictionary(kind):
        return unreadable_part(kind.value_type)
    if isinstance(kind, pa.BaseExtensionType):
        return unreadable_part(kind.storage_type)
    children = (kind.field(i).type for i in range(kind.num_fields))  # list items, struct fields, map entries
    return next((part for part in map(unreadable_part, children) if part is not None), None)


def is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _is_binary(kind: pa.DataType) -> bool:
    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind))


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _wider_int(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    if pa.types.is_signed_integer(a) == pa.types.is_signed_integer(b):
        return a if a.bit_width >= b.bit_width else b
    unsigned = a if pa.types.is_unsigned_integer(a) else b
    return pa.int64() if unsigned.bit_width < 64 else None  # uint64 does not fit int64


def _wider_float(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    return a if a.bit_width >= b.bit_width else b


def _unify_lists(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    inner = unify_types(a.value_type, b.value_type)
    return pa.large_list(inner) if inner is not None else None


def _unify_structs(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    merged = []
    for name in dict.fromkeys([f.name for f in a] + [f.name for f in b]):
        left = a.field(name).type if a.get_field_index(name) >= 0 else pa.null()
        right = b.field(name).type if b.get_field_index(name) >= 0 else pa.null()
        inner = unify_types(left, right)
        if inner is None:
            return None
        merged.append(pa.field(name, inner))
    return pa.struct(merged)


_Widen = Callable[[pa.DataType, pa.DataType], pa.DataType | None]
_FAMILIES: tuple[tuple[Callable[[pa.DataType], bool], _Widen], ...] = (
    (is_string, lambda a, b: pa.large_string()),
    (_is_binary, lambda a, b: pa.large_binary()),
    (pa.types.is_integer, _wider_int),
    (pa.types.is_floating, _wider_float),
    (_is_list, _unify_lists),
    (pa.types.is_struct, _unify_structs),
)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types (nulls where it lacks one)."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
