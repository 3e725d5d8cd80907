"""Export into PostgreSQL: COPY into a temp table, then INSERT … ON CONFLICT DO UPDATE, one transaction.

Nested columns become ``jsonb`` (see :mod:`pg_types`), scalars keep their types. The target table is
created on first export with a primary key on ``(_task, _record_id)``; new columns are added with
``ALTER TABLE … ADD COLUMN``; a column whose type changed stops the export before anything is
written. Rows whose values are all equal are not rewritten (no dead tuples on a re-export), nor
rows the keep rule holds (:mod:`keep`), unless ``--replace``. An identity holding a NUL character is
refused (:func:`pg_copy.nul_identity`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.warehouse.job import ExportJob, MergeCounts, NulTally
from pipeline.warehouse.keep import KEPT_NEWER, KEPT_OK, Kept, keep_reason, run_starts
from pipeline.warehouse.pg_copy import batch_to_csv, nul_identity
from pipeline.warehouse.pg_errors import connection_error, load_error
from pipeline.warehouse.pg_types import pg_columns
from pipeline.warehouse.result import ExportResult
from pipeline.warehouse.runs import RUNS_KEY
from pipeline.warehouse.schema_diff import Clash, plan_columns, raise_on_clash
from pipeline.warehouse.source import KEY_COLUMNS, RUN_ID_COLUMN, RUNS_TABLE
from pipeline.warehouse.sql import column_list, qualified, quote_ident
from pipeline.warehouse.targets import PostgresTarget

CONNECT_TIMEOUT_S = 10
_BATCH_ROWS = 20_000
_STAGE = "glm_extract_stage"
_STARTS = "glm_extract_run_starts"


def export_postgres(target: PostgresTarget, job: ExportJob) -> ExportResult:
    """Merge the enriched table and its runs rows into ``target`` in one transaction."""
    started = time.perf_counter()
    where = target.describe()
    schema = target.schema
    nul = NulTally()
    with (
        _connect(target, where) as conn,
        _translated(where, f"{schema}.{job.table}", KEY_COLUMNS, target.secrets),
        conn.transaction(),
    ):
        _ensure_schema(conn, schema)
        counts = _merge(conn, schema, job.table, job.source.schema, _batches(job.source.path), key=KEY_COLUMNS, nul=nul,
                        keep=None if job.replace else job)
        with _translated(where, f"{schema}.{RUNS_TABLE}", RUNS_KEY, target.secrets):
            _merge(conn, schema, RUNS_TABLE, job.runs.schema, job.runs.to_batches(), key=RUNS_KEY, nul=nul)
    return ExportResult(
        target=where,
        table=f"{schema}.{job.table}",
        rows=counts.rows,
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        table_rows=counts.table_rows,
        runs_table=f"{schema}.{RUNS_TABLE}",
        run_ids=job.run_ids,
        added_columns=counts.added_columns,
        seconds=time.perf_counter() - started,
        nul_rows=nul.rows,
        nul_examples=tuple(nul.examples),
        nul_columns=tuple(nul.columns),
        kept_ok=counts.kept.ok,
        kept_newer=counts.kept.newer,
        warnings=job.warnings,
    )


@contextmanager
def _translated(where: str, table: str, key: tuple[str, ...], known: tuple[str, ...]) -> Iterator[None]:
    """psycopg errors inside become one-line warehouse errors (the transaction rolls back)."""
    try:
        yield
    except psycopg.Error as exc:
        raise load_error(exc, where, table, key, known) from None  # the driver's own text may hold the password


def _connect(target: PostgresTarget, where: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(target.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise connection_error(exc, where, target.secrets) from None  # its scrubbed text is in the message


def _lock(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """A transaction-scoped advisory lock: serialises exports racing to create or widen ``name``."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"glm-extract:{name}"])


def _ensure_schema(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """Create the schema only when missing (CREATE needs a right that using it does not)."""
    exists = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
    if conn.execute(exists, [schema]).fetchone() is None:
        _lock(conn, f"schema {schema}")
        if conn.execute(exists, [schema]).fetchone() is None:
            conn.execute(_sql(f"CREATE SCHEMA {quote_ident(schema)}"))


def _merge(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    table: str,
    arrow_schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    key: tuple[str, ...],
    nul: NulTally,
    keep: ExportJob | None = None,
) -> MergeCounts:
    """Create or widen ``table``, COPY ``batches`` into a temp table, upsert them on ``key``.

    With ``keep`` (the export, unless ``--replace``), matched rows the keep rule holds stay as stored."""
    target = qualified(schema, table)
    _lock(conn, target)
    new = pg_columns(arrow_schema)
    existing = _existing_columns(conn, target)
    untyped = frozenset(f.name for f in arrow_schema if pa.types.is_null(f.type))
    plan = plan_columns(existing, new, untyped=untyped)
    raise_on_clash(
        plan,
        table=f"{schema}.{table}", alter=lambda c: _alter_statement(target, c),
        rename=lambda old, new: f"ALTER TABLE {target} RENAME COLUMN {quote_ident(old)} TO {quote_ident(new)}",
    )
    if plan.create:
        conn.execute(_sql(_create_statement(target, new, key)))
    for name, kind in plan.added:
        conn.execute(_sql(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {kind}"))
    rows = _stage(conn, new, batches, key, nul)
    reason = keep_reason(new, stored="t.", incoming="EXCLUDED.", starts=_STARTS) if keep and not plan.create else None
    kept = _kept(conn, schema, target, list(new), key, keep) if reason and keep else Kept()
    inserted, changed = _upsert(conn, target, list(new), key, reason)
    conn.execute(_sql(f"DROP TABLE {_STAGE}"))
    table_rows = _count(conn, target)
    return MergeCounts(rows, inserted, changed - inserted, table_rows, tuple(n for n, _ in plan.added), kept)


def _kept(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    target: str,
    columns: list[str],
    key: tuple[str, ...],
    job: ExportJob,
) -> Kept:
    """Stage the runs' starts the rule compares, and count the staged rows it keeps, by reason."""
    run_id = quote_ident(RUN_ID_COLUMN)
    distinct = f"SELECT DISTINCT CAST({run_id} AS text) FROM {target} WHERE {run_id} IS NOT NULL"
    stored = [str(r[0]) for r in conn.execute(_sql(distinct)).fetchall()] if RUN_ID_COLUMN in columns else []
    recorded = _recorded_starts(conn, schema) | {k: v for k, v in job.run_started.items() if v is not None}
    starts = run_starts([*stored, *job.source.run_ids], recorded)
    conn.execute(_sql(f"CREATE TEMP TABLE {_STARTS} (run_id text PRIMARY KEY, started_at timestamptz) ON COMMIT DROP"))
    with conn.cursor() as cur:
        cur.executemany(_sql(f"INSERT INTO {_STARTS} VALUES (%s, %s)"),
                        [(r["run_id"], r["started_at"]) for r in starts.to_pylist()])
    reason = keep_reason(columns, stored="t.", incoming="s.", starts=_STARTS)
    on = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in key)
    rows = conn.execute(_sql(
        f"SELECT reason, count(*) FROM (SELECT {reason} AS reason FROM {_STAGE} AS s JOIN {target} AS t ON {on}) AS k "
        "WHERE reason IS NOT NULL GROUP BY reason"
    )).fetchall()
    counts = {str(r[0]): r[1] for r in rows}
    return Kept(ok=int(str(counts.get(KEPT_OK, 0))), newer=int(str(counts.get(KEPT_NEWER, 0))))


def _recorded_starts(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> dict[str, dt.datetime | None]:
    """``runs.started_at`` by run id, for run ids that do not begin with their start time."""
    runs = qualified(schema, RUNS_TABLE)
    if not {"run_id", "started_at"} <= set(_existing_columns(conn, runs) or {}):
        return {}
    rows = conn.execute(_sql(f"SELECT run_id, started_at FROM {runs} WHERE started_at IS NOT NULL")).fetchall()
    return {str(run_id): started for run_id, started in rows if isinstance(started, dt.datetime)}


def _stage(
    conn: psycopg.Connection[tuple[object, ...]],
    columns: dict[str, str],
    batches: Iterable[pa.RecordBatch],
    key: tuple[str, ...],
    nul: NulTally,
) -> int:
    """COPY the batches into a fresh temp table typed like the target; return the row count.

    Rows whose NUL characters were removed are tallied in ``nul`` by their record id (the last key
    column). A NUL in the identity itself is refused: removing it could make it another record's."""
    defs = ", ".join(f"{quote_ident(n)} {kind}" for n, kind in columns.items())
    conn.execute(_sql(f"CREATE TEMP TABLE {_STAGE} ({defs}) ON COMMIT DROP"))
    rows = 0
    copy_sql = _sql(f"COPY {_STAGE} ({column_list(columns)}) FROM STDIN (FORMAT csv)")
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for batch in batches:
            nul_identity(batch, key)
            chunk = batch_to_csv(batch)
            copy.write(chunk.data)
            if chunk.nul_rows:
                ids = batch.column(key[-1]).take(pa.array(chunk.nul_rows)).to_pylist()
                nul.add([str(i) for i in ids], chunk.nul_columns)
            rows += batch.num_rows
    return rows


def _upsert(
    conn: psycopg.Connection[tuple[object, ...]],
    target: str,
    columns: list[str],
    key: tuple[str, ...],
    keep_reason: str | None = None,
) -> tuple[int, int]:
    """(rows inserted, rows inserted or changed); ``xmax = 0`` marks a freshly inserted row.

    ``keep_reason`` (over ``t.`` and ``EXCLUDED.``) is non-null for matched rows to leave as stored."""
    values = [c for c in columns if c not in key]
    action = "DO NOTHING"
    if values:
        assignments = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in values)
        differs = f"({column_list(values, 't.')}) IS DISTINCT FROM ({column_list(values, 'EXCLUDED.')})"
        if keep_reason:
            differs += f" AND {keep_reason} IS NULL"
        action = f"DO UPDATE SET {assignments} WHERE {differs}"
    sql = (
        f"WITH written AS (INSERT INTO {target} AS t ({column_list(columns)}) "
        f"SELECT {column_list(columns)} FROM {_STAGE} ON CONFLICT ({column_list(key)}) {action} "
        "RETURNING (t.xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FROM written"
    )
    row = conn.execute(_sql(sql)).fetchone()
    return (int(str(row[0])), int(str(row[1]))) if row else (0, 0)


def _create_statement(target: str, columns: dict[str, str], key: tuple[str, ...]) -> str:
    defs = [f"{quote_ident(n)} {kind}{' NOT NULL' if n in key else ''}" for n, kind in columns.items()]
    defs.append(f"PRIMARY KEY ({column_list(key)})")
    return f"CREATE TABLE {target} ({', '.join(defs)})"


def _alter_statement(target: str, clash: Clash) -> str:
    return f"ALTER TABLE {target} ALTER COLUMN {quote_ident(clash.column)} TYPE {clash.new_type}"


def _existing_columns(conn: psycopg.Connection[tuple[object, ...]], target: str) -> dict[str, str] | None:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [target],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows} or None


def _count(conn: psycopg.Connection[tuple[object, ...]], target: str) -> int:
    row = conn.execute(_sql(f"SELECT count(*) FROM {target}")).fetchone()
    return int(str(row[0])) if row else 0


def _sql(text: str) -> bytes:
    """Dynamic SQL built from quoted identifiers only, as bytes (psycopg types ``str`` queries as literals)."""
    return text.encode()


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The Parquet file in bounded batches."""
    with pq.ParquetFile(path) as parquet:
        yield from parquet.iter_batches(batch_size=_BATCH_ROWS)
