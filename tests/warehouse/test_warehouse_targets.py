"""Target strings → target values; passwords never reach a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.warehouse import (
    DltTarget,
    DuckDBTarget,
    PostgresTarget,
    TargetError,
    parse_target,
    redact_dsn,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("warehouse.duckdb", DuckDBTarget(Path("warehouse.duckdb"))),
        ("out/w.DB", DuckDBTarget(Path("out/w.DB"))),
        ("duckdb:///srv/w.duckdb", DuckDBTarget(Path("/srv/w.duckdb"))),
        ("duckdb:////srv/w.duckdb", DuckDBTarget(Path("/srv/w.duckdb"))),
        ("duckdb://rel/w.duckdb?schema=analytics", DuckDBTarget(Path("rel/w.duckdb"), "analytics")),
        ("postgresql://u@h:5432/db", PostgresTarget({"user": "u", "host": "h", "port": "5432", "dbname": "db"})),
        (
            "postgres://u@h/db?schema=wh&sslmode=require",
            PostgresTarget({"user": "u", "host": "h", "dbname": "db", "sslmode": "require"}, "wh"),
        ),
        ("host=h dbname=db", PostgresTarget({"host": "h", "dbname": "db"})),
        ("dlt:snowflake", DltTarget("snowflake")),
        ("dlt:bigquery?dataset=analytics", DltTarget("bigquery", "analytics")),
    ],
)
def test_parse_target(text: str, expected: object) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text", ["warehouse.csv", "mysql://u@h/db", "dlt:", "dlt:snow flake", "duckdb://", "w.duckdb?schema=a;b"]
)
def test_unknown_targets_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_bad_schema_name_is_refused() -> None:
    with pytest.raises(TargetError, match="bad schema name"):
        parse_target("postgresql://u@h/db?schema=x;drop")


def test_passwords_are_redacted_everywhere() -> None:
    assert redact_dsn("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    target = parse_target("postgresql://u:s3cret@h:5432/db?schema=wh")
    assert "s3cret" not in target.describe()
    with pytest.raises(TargetError) as info:
        parse_target("mysql://u:s3cret@h/db")
    assert "s3cret" not in str(info.value)


def test_a_duckdb_path_with_an_equals_sign_stays_a_duckdb_path() -> None:
    assert parse_target("dt=2026-11-25/w.duckdb") == DuckDBTarget(Path("dt=2026-11-25/w.duckdb"))
