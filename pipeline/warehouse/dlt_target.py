"""Export to the long tail (Snowflake, BigQuery, Redshift, ClickHouse, …) through dlt.

dlt is a maintained loading library: it knows each warehouse's types, staging and merge SQL, so we
write none of it. The enriched table goes in as Arrow batches with ``write_disposition="merge"``
and primary key ``(_task, _record_id)``; the ``runs`` rows merge on ``run_id``. Credentials come
from dlt's own configuration (``.dlt/secrets.toml`` or ``DESTINATION__<NAME>__CREDENTIALS``).

Differences from the native targets, by dlt's design: nested values land as the destination's JSON
type; each table's merge is atomic on its own (dlt stages and merges per table), not both tables in
one transaction; dlt's pipeline state lives in a temporary directory, so an export keeps nothing on
local disk and every export is self-contained. dlt's merge replaces every matched row, so the keep
rule of the native targets (:mod:`keep`: a stored ok answer or a newer run's row is not overwritten)
does not apply here: the last export wins.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import first_line
from pipeline.warehouse.errors import AccessDenied, LoadFailed, TargetError, WarehouseError
from pipeline.warehouse.job import ExportJob
from pipeline.warehouse.result import ExportResult
from pipeline.warehouse.runs import RUNS_KEY
from pipeline.warehouse.source import KEY_COLUMNS, RUNS_TABLE
from pipeline.warehouse.targets import DltTarget

PIPELINE_NAME = "glm_extract"
_BATCH_ROWS = 20_000


def export_dlt(target: DltTarget, job: ExportJob) -> ExportResult:
    """Merge the table and its runs rows into a dlt destination."""
    import dlt

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glm-extract-dlt-") as state_dir:
        pipeline = _pipeline(target, state_dir)
        before = _count_rows(pipeline, job.table)
        data = dlt.resource(_batches(job), name=job.table, write_disposition="merge", primary_key=KEY_COLUMNS)
        runs = dlt.resource(job.runs, name=RUNS_TABLE, write_disposition="merge", primary_key=RUNS_KEY)
        _run(pipeline, target, [data, runs])
        after = _count_rows(pipeline, job.table)
    inserted = after - (before or 0) if after is not None else None
    return ExportResult(
        target=target.describe(),
        table=f"{target.dataset}.{job.table}",
        rows=job.source.rows,
        inserted=inserted,
        updated=None,
        unchanged=None,
        table_rows=after,
        runs_table=f"{target.dataset}.{RUNS_TABLE}",
        run_ids=job.run_ids,
        seconds=time.perf_counter() - started,
        warnings=job.warnings,
    )


def _pipeline(target: DltTarget, state_dir: str) -> Any:
    import dlt
    from dlt.common.destination.exceptions import DestinationException

    try:
        return dlt.pipeline(
            pipeline_name=PIPELINE_NAME,
            destination=target.destination,
            dataset_name=target.dataset,
            pipelines_dir=state_dir,
        )
    except DestinationException as exc:
        raise TargetError(
            f"dlt does not know destination {target.destination!r}: use one of dlt's destinations "
            "(snowflake, bigquery, redshift, clickhouse, postgres, duckdb, …) or configure a named one"
        ) from exc


def _run(pipeline: Any, target: DltTarget, resources: list[Any]) -> None:
    from dlt.common.configuration.exceptions import ConfigFieldMissingException
    from dlt.common.exceptions import DltException
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        pipeline.run(resources)
    except PipelineStepFailed as exc:
        cause = exc.exception
        if isinstance(cause, ConfigFieldMissingException):
            raise _missing_config(target, cause) from exc
        detail = first_line(cause or exc)
        raise LoadFailed(f"dlt export to {target.describe()} failed at step {exc.step}: {detail}") from exc
    except DltException as exc:
        raise LoadFailed(f"dlt export to {target.describe()} failed: {first_line(exc)}") from exc


def _missing_config(target: DltTarget, cause: BaseException) -> WarehouseError:
    name = target.destination.upper()
    return AccessDenied(
        f"dlt has no credentials for {target.destination}: {first_line(cause)}; set "
        f"DESTINATION__{name}__CREDENTIALS or [destination.{target.destination}.credentials] in .dlt/secrets.toml"
    )


def _count_rows(pipeline: Any, table: str) -> int | None:
    """Rows in ``table`` for SQL destinations; None when the table is missing or not countable."""
    from dlt.common.exceptions import DltException

    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(table)}")
            return int(rows[0][0]) if rows else None
    except DltException:  # a count is informative only: no table yet, or no SQL client
        return None


def _batches(job: ExportJob) -> Iterator[pa.RecordBatch]:
    """The Parquet file in bounded batches, identity columns marked non-null as dlt's key hints are."""
    schema = _with_required_keys(job.source.schema)
    with pq.ParquetFile(job.source.path) as parquet:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            yield batch.cast(schema)


def _with_required_keys(schema: pa.Schema) -> pa.Schema:
    for name in KEY_COLUMNS:
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    return schema

