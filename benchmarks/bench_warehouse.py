"""Warehouse export timings, measured in one run: first export, identical re-export, new-run re-export.

    .venv/bin/python benchmarks/bench_warehouse.py                 # 100k rows, DuckDB + PostgreSQL
    .venv/bin/python benchmarks/bench_warehouse.py --rows 10000 --no-postgres

The table is synthetic but shaped like an enriched table (22 columns: input columns, a struct, a
list of structs, a list of strings, scalars, meta columns). "re-export (same run)" merges the same
file again (every row unchanged); "re-export (new run)" merges a file whose `_run_id` and latency
changed on every row (every row updated), which is what a nightly rerun does. Prints figures; never
asserts them. PostgreSQL goes into a throwaway schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import psycopg

from pipeline.warehouse import ExportResult, TargetUnreachable, export_table

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def make_table(rows: int, run_id: str, seed: int = 7) -> pl.DataFrame:
    """A synthetic enriched table of ``rows`` rows and 22 columns."""
    rng = random.Random(seed)
    ids = [f"t-{i:08d}" for i in range(rows)]
    kinds = ["person", "org", "product", "place"]
    return pl.DataFrame(
        {
            "ticket_id": ids,
            "text": [f"customer {i} reports issue {rng.randint(1, 999)} with order" for i in range(rows)],
            "created_on": [dt.date(2026, 1, 1) + dt.timedelta(days=i % 300) for i in range(rows)],
            "channel": [rng.choice(["email", "chat", "phone"]) for _ in range(rows)],
            "category": [rng.choice(["billing", "delivery", "account"]) for _ in range(rows)],
            "priority": [rng.randint(1, 5) for _ in range(rows)],
            "risk_flags": [
                {"urgent": rng.random() < 0.2, "legal": rng.random() < 0.05, "score": rng.random()} for _ in range(rows)
            ],
            "entities": [
                [{"type": rng.choice(kinds), "name": f"e{rng.randint(1, 500)}"} for _ in range(rng.randint(0, 3))]
                for _ in range(rows)
            ],
            "tags": [
                [rng.choice(["refund", "late", "vip", "bug"]) for _ in range(rng.randint(0, 2))] for _ in range(rows)
            ],
            "_record_id": ids,
            "_task": ["ticket_qa"] * rows,
            "_status": [rng.choice(["ok"] * 18 + ["failed", "invalid"]) for _ in range(rows)],
            "_error_code": [None] * rows,
            "_attempts": pl.Series([1] * rows, dtype=pl.Int32),
            "_reasks": pl.Series([0] * rows, dtype=pl.Int32),
            "_prompt_tokens": [rng.randint(300, 900) for _ in range(rows)],
            "_completion_tokens": [rng.randint(40, 200) for _ in range(rows)],
            "_cost_cny": [rng.random() / 1000 for _ in range(rows)],
            "_latency_ms": [rng.lognormvariate(5.3, 0.3) for _ in range(rows)],
            "_model": ["glm-4-air-250414"] * rows,
            "_from_journal": [False] * rows,
            "_run_id": [run_id] * rows,
        },
        schema_overrides={"_error_code": pl.String},
    )


def timed(export: Callable[[], ExportResult]) -> tuple[float, ExportResult]:
    started = time.perf_counter()
    result = export()
    return time.perf_counter() - started, result


def bench_target(name: str, target: str, first: Path, rerun: Path) -> None:
    for label, path in (("first export", first), ("re-export (same run)", first), ("re-export (new run)", rerun)):
        seconds, result = timed(lambda p=path: export_table(p, target))
        print(
            f"{name:<10} {label:<22} {seconds:7.2f} s   "
            f"new {result.inserted} updated {result.updated} unchanged {result.unchanged} "
            f"table {result.table_rows}"
        )


def bench_postgres(url: str, first: Path, rerun: Path) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        bench_target("postgres", f"{url}?schema={schema}", first, rerun)
    except TargetUnreachable as exc:
        print(f"postgres   skipped: {exc}")
        return
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-") as tmp:
        first, rerun = Path(tmp, "first.parquet"), Path(tmp, "rerun.parquet")
        table = make_table(args.rows, "run-1")
        table.write_parquet(first)
        table.with_columns(pl.lit("run-2").alias("_run_id"), pl.col("_latency_ms") + 1).write_parquet(rerun)
        print(f"rows {args.rows}, columns {table.width}, duckdb {duckdb.__version__}, polars {pl.__version__}")
        bench_target("duckdb", str(Path(tmp, "warehouse.duckdb")), first, rerun)
        if not args.no_postgres:
            bench_postgres(args.postgres, first, rerun)


if __name__ == "__main__":
    main()
