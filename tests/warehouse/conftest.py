"""Fixtures for the warehouse tests: a synthetic enriched table, and a throwaway PostgreSQL schema.

PostgreSQL tests are marked ``postgres`` and skip with a reason when no server answers at
127.0.0.1:5432 (override with GLM_EXTRACT_TEST_POSTGRES_URL). Each test gets its own schema,
dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
import typer

from pipeline.commands.export import register

DEFAULT_PG_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://127.0.0.1:5432/test")


def enriched_frame(rows: int = 4, *, run_id: str = "run-1", task: str = "ticket_qa") -> pl.DataFrame:
    """A small enriched table (docs/contracts.md §3): input, typed schema columns, meta columns."""
    ids = [f"t-{i}" for i in range(rows)]
    return pl.DataFrame(
        {
            "ticket_id": ids,
            "text": [f"ticket text {i}" for i in range(rows)],
            "category": ["billing" if i % 2 else "delivery" for i in range(rows)],
            "priority": [i + 1 for i in range(rows)],
            "risk_flags": [{"urgent": i == 0, "score": i / 10} for i in range(rows)],
            "entities": [[{"type": "person", "name": f"p{i}"}, {"type": "org", "name": "acme"}] for i in range(rows)],
            "_record_id": ids,
            "_task": [task] * rows,
            "_status": ["ok"] * (rows - 1) + ["failed"],
            "_attempts": pl.Series([1] * rows, dtype=pl.Int32),
            "_prompt_tokens": [100] * rows,
            "_completion_tokens": [20] * rows,
            "_cost_cny": [0.001] * rows,
            "_latency_ms": [100.0 + i for i in range(rows)],
            "_model": ["glm-4-air-250414"] * rows,
            "_from_journal": [False] * rows,
            "_run_id": [run_id] * rows,
        }
    )


@pytest.fixture
def frame() -> Callable[..., pl.DataFrame]:
    """The synthetic enriched-table builder (see :func:`enriched_frame`)."""
    return enriched_frame


@pytest.fixture
def make_table(tmp_path: Path) -> Callable[..., Path]:
    """Write an enriched table (optionally transformed) to a fresh Parquet file and return its path."""
    counter = iter(range(1_000_000))

    def make(frame: pl.DataFrame | None = None, *, summary: dict[str, Any] | None = None, **kwargs: Any) -> Path:
        path = tmp_path / f"enriched-{next(counter)}.parquet"
        (frame if frame is not None else enriched_frame(**kwargs)).write_parquet(path)
        if summary is not None:
            import orjson

            path.with_name(path.name + ".summary.json").write_bytes(orjson.dumps(summary))
        return path

    return make


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A PostgreSQL URL that connects, or skip the test."""
    override = os.environ.get("GLM_EXTRACT_TEST_POSTGRES_URL")
    if not override and not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    for url in (override,) if override else DEFAULT_PG_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    pytest.skip(f"no PostgreSQL connection with {override or ' or '.join(DEFAULT_PG_URLS)}")


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A unique schema name; the schema is dropped after the test."""
    schema = f"test_wh_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


@pytest.fixture
def pg_target(pg_url: str, pg_schema: str) -> str:
    """The export target string for the test's schema."""
    return f"{pg_url}?schema={pg_schema}"


@pytest.fixture
def pg_query(pg_url: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run one statement on the test database and return its rows (none for DDL)."""

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            cursor = conn.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []

    return query


@pytest.fixture
def free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app() -> typer.Typer:
    """A CLI holding only the ``export`` command."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app
