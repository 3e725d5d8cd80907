"""SQL spelling shared by the DuckDB and PostgreSQL targets (pure)."""

from __future__ import annotations

from collections.abc import Iterable


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted identifier, safe for any column name an input may carry."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, table: str) -> str:
    """``"schema"."table"`` or ``"table"``."""
    return f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)


def column_list(names: Iterable[str], prefix: str = "") -> str:
    """Quoted, comma-separated names, each optionally prefixed (``s.`` for a source alias)."""
    return ", ".join(prefix + quote_ident(n) for n in names)


def string_literal(value: str) -> str:
    """``value`` as a single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
