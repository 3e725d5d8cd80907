"""The Prefect flow: Parquet in → one task per shard through the same engine as the CLI → typed
Parquet out, with artifacts, an optional warehouse export, and the run summary as the result.

Shape (docs/operations.md): the flow checks everything that can fail before money is spent
(``prepare_run``), opens the run (:class:`pipeline.runner.Run`, as the CLI does), cuts the input
into at most :data:`MAX_SHARDS` shards, and runs shard tasks :data:`PARALLEL_SHARDS` at a time with
``asyncio.gather``; each calls ``Run.shard``. Each shard task leases its share of the account's
global concurrency limit for its shard and gates its own requests locally; runs take turns at
shard boundaries, interactive runs before batch ones (``flows.limits``). Tasks pass paths and
small JSON summaries, never frames. A shard task retries only on infrastructure faults; API
faults are the engine's job. Every answer lands in the journal as it arrives, so a failed or
re-run shard never pays twice.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import httpx
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from prefect.states import Failed
from prefect.tasks import Task
from prefect.utilities.annotations import quote

from flows.artifacts import ProgressReport, publish_estimate, publish_refusal, publish_summary
from flows.limits import Gate, choose_gate
from flows.params import DATE_PLACEHOLDER, ExtractParams, default_schemas_dir, fill_date, local_path, partition_day
from flows.reports import evaluate_output, failure_message, run_line, shard_line
from flows.secrets import describe_key_source, load_secret_key, redact_in_logs
from pipeline import io
from pipeline.endpoints import OFFLINE_BANNER, resolve_target
from pipeline.errors import GlmExtractError, InputError, OutputError, TaskError
from pipeline.journal import JournalBusy
from pipeline.runner import PreparedRun, Run, RunRequest, ShardsDone, new_run_id, prepare_run
from pipeline.settings import Settings
from pipeline.stats import RunStats, stats_from_dict, stats_to_dict
from pipeline.summary import RunSummary

MAX_SHARDS = 300  # task runs per flow run: the server records ~13/s; keep runs to hundreds
PARALLEL_SHARDS = 4  # shard tasks in flight; each leases concurrency // PARALLEL_SHARDS slots
SHARD_RETRY_DELAYS: list[float] = [10.0, 60.0]


class TooManyFailures(GlmExtractError):
    """More rows failed than ``fatal_failure_ratio`` allows (the output is still written)."""


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of one run shares (passed in-process, never serialised): the run
    (its transport, budget and stop signal) and this run's lease on the account's limit."""

    run: Run
    gate: Gate
    slots: int


def shard_size_for(rows: int, preferred: int) -> int:
    """The preferred shard size, grown so a run has at most :data:`MAX_SHARDS` shards."""
    return max(1, preferred, math.ceil(rows / MAX_SHARDS))


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Worth retrying the whole shard: disk, network to Prefect, a locked journal (not API faults).
    A group (what a shard's TaskGroup raises) is worth it when every error in it is."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_infrastructure_fault(inner) for inner in exc.exceptions)
    if isinstance(exc, JournalBusy):  # another process held the journal longer than a shard waits to open it
        return True
    if isinstance(exc, GlmExtractError | ConcurrencySlotAcquisitionError | AcquireConcurrencySlotTimeoutError):
        return False
    return isinstance(exc, OSError | sqlite3.OperationalError | httpx.TransportError)


def retry_on_infrastructure(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry a shard only on an infrastructure fault."""
    return isinstance(state.data, BaseException) and is_infrastructure_fault(state.data)


@task(name="extract-shard", task_run_name="shard-{spec.index}", retries=len(SHARD_RETRY_DELAYS),
      retry_delay_seconds=SHARD_RETRY_DELAYS, retry_condition_fn=retry_on_infrastructure,
      cache_policy=NO_CACHE, persist_result=False)
async def extract_shard(job: ShardJob, spec: io.ShardSpec) -> dict[str, Any]:
    """Lease the shard's slots, run it through the engine into its part file, return a small summary."""
    clock = time.perf_counter()
    async with job.gate.lease(job.slots):
        done = await job.run.shard(spec, job.gate.limiter_for(job.slots))
    get_run_logger().info(shard_line(spec, done.stats, time.perf_counter() - clock, job.slots, job.gate.label))
    return {"index": spec.index, "rows": spec.rows, "part": str(done.parts[0]) if done.parts else None,
            "stats": stats_to_dict(done.stats)}


@task(name="export-output", retries=2, retry_delay_seconds=30,
      retry_condition_fn=lambda task, run, state: bool(getattr(state.data, "transient", False)),
      cache_policy=NO_CACHE, persist_result=False)
async def export_output(output: str, target: str, summary: dict[str, Any]) -> str:
    """Merge the output into the warehouse; one line saying what happened (``summary``: its JSON object)."""
    from pipeline.warehouse import export_table  # duckdb/psycopg load only when exporting

    result = await asyncio.to_thread(export_table, Path(output), target, summary=summary)
    return result.describe()


#: Errors in what the run was given (input, output, task): the run ends Failed with their one line
#: and an error artifact, not with a traceback in its log.
REFUSALS = (InputError, OutputError, TaskError)


@flow(name="extract-documents", persist_result=False, log_prints=False)
async def extract_documents(params: ExtractParams) -> dict[str, Any] | State[Any]:
    """Extract typed fields from every row of ``params.input`` into ``params.output``; return the summary.
    Bad input, output or task: a Failed state carrying the one-line reason (nothing was sent)."""
    try:
        return await run_documents(params)
    except REFUSALS as exc:
        get_run_logger().error("%s", exc)
        await publish_refusal(params.task.value, str(exc))
        return Failed(message=str(exc))


async def run_documents(params: ExtractParams) -> dict[str, Any]:
    """The flow's body: check, shard, run, assemble, export, evaluate, report."""
    logger = get_run_logger()
    day = partition_day(params)
    settings = await build_settings(params)
    prepared = prepare_run(build_request(params, day), settings)
    skipped = io.skipped_note(prepared.request.input)  # a folder's `_`/`.` files: named, never dropped silently
    if skipped is not None:
        logger.warning("%s", skipped)
    shards = io.plan_shards(prepared.info, shard_size_for(prepared.info.rows, settings.shard_size))
    if params.estimate_only:
        return await estimate_only(prepared, settings, shards)
    gate = await choose_gate(settings.model, settings.concurrency, params.priority)
    summary = await extract_all(prepared, settings, gate, shards, day.isoformat())
    export_note, export_error = await export_if_asked(params, summary)
    evaluation = evaluate_output(prepared.task, prepared.request.output)
    await publish_summary(summary, evaluation=evaluation, export=export_note)
    logger.info(run_line(summary))
    if export_error is not None:
        raise export_error
    check_failure_ratio(summary, settings)
    return summary.to_dict()


async def extract(task: str, input_path: str, output_path: str, **options: Any) -> dict[str, Any]:
    """Run the flow with explicit arguments (scripts, notebooks); ``options`` are other ExtractParams fields."""
    params = ExtractParams.model_validate({"task": task, "input": input_path, "output": output_path, **options})
    # a refused run's Failed state surfaces here as Prefect's FailedRun carrying the one-line reason
    return cast(dict[str, Any], await extract_documents(params))


async def estimate_only(prepared: PreparedRun, settings: Settings, shards: Sequence[io.ShardSpec]) -> dict[str, Any]:
    """Count requests and the expected cost, publish them, send nothing."""
    from flows.estimate import estimate_run  # renders every row: only estimate-only runs pay the import

    estimate = estimate_run(prepared, settings, shards).as_dict()
    await publish_estimate(estimate)
    get_run_logger().info("estimate only: %s requests, ≈ %.4f CNY", estimate["requests"], estimate["cost_cny"])
    return estimate


async def build_settings(params: ExtractParams) -> Settings:
    """Settings from the environment, overridden by the parameters; the key from the Secret block."""
    key = await load_secret_key(params.api_key_block)
    overrides: dict[str, Any] = {"model": params.model, "concurrency": params.concurrency,
                                 "budget_cny": params.budget_cny, "schemas_dir": default_schemas_dir()}
    if key is not None:
        overrides["ZHIPUAI_API_KEY"] = key
    settings = Settings(**overrides)
    redact_in_logs(settings.api_key)
    get_run_logger().info("API key from: %s", describe_key_source(key, settings.api_key))
    return settings


def build_request(params: ExtractParams, day: date) -> RunRequest:
    """The run's input and output with the partition date filled in (dated output folders are created)."""
    output = Path(local_path(fill_date(params.output, day)))
    if DATE_PLACEHOLDER in params.output:
        output.parent.mkdir(parents=True, exist_ok=True)
    return RunRequest(params.task.value, local_path(fill_date(params.input, day)), output, new_run_id(),
                      columns=params.columns, output_prefix=params.output_prefix)


async def extract_all(prepared: PreparedRun, settings: Settings, gate: Gate, shards: Sequence[io.ShardSpec],
                      partition_date: str) -> RunSummary:
    """Run every shard task, then assemble the output and the summary (parts go on any failure)."""
    width = max(1, min(PARALLEL_SHARDS, len(shards)))
    slots = gate.slots_per_shard(settings.concurrency, width)
    with resolve_target(settings) as target:
        if target.kind == "emulator":
            get_run_logger().warning(OFFLINE_BANNER)
        async with Run.open(prepared, settings, target) as run:  # one transport, shared by the shard tasks
            results = await run_shard_tasks(ShardJob(run, gate, slots), shards, width)
            done = ShardsDone([Path(r["part"]) for r in results if r["part"]], merge_results(results))
            return run.finish(done, gate.label, partition_date=partition_date, shards=len(shards))


async def run_shard_tasks(job: ShardJob, shards: Sequence[io.ShardSpec], width: int) -> list[dict[str, Any]]:
    """Shard tasks ``width`` at a time; after a failure no new shard starts, running ones finish."""
    window = asyncio.Semaphore(width)
    stop = asyncio.Event()
    progress = await ProgressReport.start(job.run.prepared.task.name, job.run.prepared.info.rows)

    async def one(spec: io.ShardSpec) -> dict[str, Any] | None:
        async with window:
            if stop.is_set():
                return None
            try:
                result = await extract_shard(cast(ShardJob, quote(job)), spec)
            except BaseException:
                stop.set()
                raise
            await progress.advance(spec.rows)
            return result

    outcomes = await asyncio.gather(*(one(spec) for spec in shards), return_exceptions=True)
    raise_first_failure(outcomes, len(shards))
    return [r for r in outcomes if isinstance(r, dict)]


def raise_first_failure(outcomes: Sequence[object], total: int) -> None:
    """Re-raise the first shard failure, saying how many shards finished (their answers are kept)."""
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if not failures:
        return
    done = sum(isinstance(o, dict) for o in outcomes)
    get_run_logger().error(failure_message(failures[0], done, total))
    raise failures[0]


def merge_results(results: Sequence[dict[str, Any]]) -> RunStats:
    """The run's tallies from the shard summaries."""
    stats = RunStats()
    for result in sorted(results, key=lambda r: int(r["index"])):
        stats.merge(stats_from_dict(result["stats"]))
    return stats


async def export_if_asked(params: ExtractParams, summary: RunSummary) -> tuple[str | None, GlmExtractError | None]:
    """Export when ``export_to`` is set; a failure is reported, then raised after the artifacts."""
    if not params.export_to:
        return None, None
    from pipeline.warehouse import WarehouseError

    try:
        note = await export_output(summary.output, params.export_to, summary.to_dict())
    except WarehouseError as exc:
        return f"export FAILED: {exc}", exc
    get_run_logger().info(note)
    return note, None


def check_failure_ratio(summary: RunSummary, settings: Settings) -> None:
    """Fail the run (output already written) when too many rows failed, as the CLI does."""
    verdict = summary.excess_failures(settings.fatal_failure_ratio)
    if verdict is not None:
        raise TooManyFailures(f"{verdict.describe(settings.fatal_failure_ratio)}; see the errors artifact")
