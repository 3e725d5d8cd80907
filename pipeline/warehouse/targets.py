"""Parse the ``--to`` string into a target value; redact passwords for messages.

Accepted forms:

- ``warehouse.duckdb``, ``data/w.db`` — a DuckDB file (any path ending ``.duckdb`` or ``.db``);
- ``duckdb://<path>`` — a DuckDB file, everything after ``duckdb://`` is the path, so
  ``duckdb:///srv/w.duckdb`` is absolute and ``duckdb://w.duckdb`` relative;
- ``postgresql://user:pw@host:port/db`` (or ``postgres://``), or libpq's key=value form
  (``host=… dbname=…``) — PostgreSQL through psycopg (parsed and redacted by :mod:`pg_dsn`);
- ``dlt:<destination>`` — any destination of the dlt loading library (``dlt:snowflake``,
  ``dlt:bigquery``, ``dlt:clickhouse`` …), credentials from dlt's own config and environment.

The URL forms take an optional ``?schema=<name>`` (``?dataset=<name>`` for dlt; both spellings work
everywhere) naming the schema the tables go into.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from pipeline.warehouse.errors import TargetError
from pipeline.warehouse.pg_dsn import SCHEMA_KEYS, describe, is_postgres, parse_dsn, redact_dsn, secrets

__all__ = ["DEFAULT_TARGET", "DltTarget", "DuckDBTarget", "PostgresTarget", "Target", "parse_target", "redact_dsn"]

DEFAULT_TARGET = "warehouse.duckdb"
DEFAULT_DLT_DATASET = "glm_extract"
_DUCKDB_SUFFIXES = (".duckdb", ".db")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DuckDBTarget:
    """A DuckDB database file (created if missing); ``schema`` None means DuckDB's ``main``."""

    path: Path
    schema: str | None = None

    def describe(self) -> str:
        return f"duckdb:{self.path}"


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL database: libpq keywords as parsed by libpq (never shown: they may hold a password)."""

    params: dict[str, str] = field(repr=False, hash=False)
    schema: str = "public"

    def describe(self) -> str:
        return describe(self.params)

    @property
    def conninfo(self) -> str:
        """The key=value string handed to psycopg."""
        from psycopg import conninfo  # loaded only when a PostgreSQL export runs

        return conninfo.make_conninfo(**self.params)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from any driver message: a password in the target, and the one libpq
        itself takes from ``PGPASSWORD`` (the documented place for it)."""
        from_env = os.environ.get("PGPASSWORD")
        return secrets(self.params) + ((from_env,) if from_env else ())


@dataclass(frozen=True)
class DltTarget:
    """A dlt destination by name; dlt reads its credentials itself."""

    destination: str
    dataset: str = DEFAULT_DLT_DATASET

    def describe(self) -> str:
        return f"dlt:{self.destination}/{self.dataset}"


Target = DuckDBTarget | PostgresTarget | DltTarget


def parse_target(text: str) -> Target:
    """The target named by ``text``; :class:`TargetError` if it names none."""
    text = text.strip()
    lowered = text.lower()
    if is_postgres(text):
        return _parse_postgres(text)
    if lowered.startswith("duckdb://"):
        path, schema = _split_schema(text[len("duckdb://") :])
        return DuckDBTarget(path=_duckdb_path(path, text), schema=schema)
    if lowered.startswith("dlt:"):
        return _parse_dlt(text)
    if "://" not in text and lowered.endswith(_DUCKDB_SUFFIXES):
        return DuckDBTarget(path=Path(text))
    raise TargetError(
        f"unknown target {redact_dsn(text)!r}: use a path ending .duckdb, duckdb:///path, "
        "postgresql://user@host:5432/db or dlt:<destination>"
    )


def _parse_postgres(text: str) -> PostgresTarget:
    params, schema = parse_dsn(text)
    return PostgresTarget(params=params, schema=_checked_schema(schema, text) or "public")


def _parse_dlt(text: str) -> DltTarget:
    destination, schema = _split_schema(text[len("dlt:") :])
    if not _NAME.match(destination):
        raise TargetError(f"bad dlt destination {destination!r}: write dlt:<destination>, e.g. dlt:snowflake")
    return DltTarget(destination=destination, dataset=schema or DEFAULT_DLT_DATASET)


def _split_schema(rest: str) -> tuple[str, str | None]:
    head, _, query = rest.partition("?")
    return head, _schema_from(parse_qsl(query, keep_blank_values=True), rest)


def _schema_from(params: list[tuple[str, str]], text: str) -> str | None:
    values = [v for k, v in params if k in SCHEMA_KEYS]
    return _checked_schema(values[-1], text) if values else None


def _checked_schema(schema: str | None, text: str) -> str | None:
    """``schema`` if it is None or a plain SQL name; :class:`TargetError` naming ``text`` (redacted) if not."""
    if schema is not None and not _NAME.match(schema):
        raise TargetError(f"bad schema name {schema!r} in {redact_dsn(text)!r}: use letters, digits, _")
    return schema


def _duckdb_path(path: str, text: str) -> Path:
    if not path:
        raise TargetError(f"no file in {text!r}: write duckdb:///path/to/warehouse.duckdb")
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return Path(path)
