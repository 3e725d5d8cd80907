"""A whole run: check input and output (:func:`prepare_run`), then one :class:`Run` streams shards
through the engine and writes the table and the summary atomically. The CLI runs it in one call
(:func:`run_extraction`); the Prefect flow opens the same :class:`Run` and its shard tasks call
:meth:`Run.shard`. Either way a run returns a :class:`~pipeline.summary.RunSummary`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
import polars as pl

from pipeline import io
from pipeline.engine import EngineContext, RunShared, process_shard, rows_of, stop_committing
from pipeline.errors import RunAborted
from pipeline.estimate import estimate_check
from pipeline.glm.client import Endpoint, GLMClient
from pipeline.glm.retry import RetryPolicy
from pipeline.glm.transport import build_transport
from pipeline.journal import Journal
from pipeline.keys import SYNTHETIC_ENDPOINT
from pipeline.limiter import AdaptiveLimiter
from pipeline.prompts import RenderOptions
from pipeline.redact import without_credentials
from pipeline.settings import Settings
from pipeline.stats import RunStats
from pipeline.summary import BudgetCheck, CostSplit, EstimateCheck, Latency, Requests, RunSummary, Tokens
from pipeline.tables import RunColumns, assemble_shard, check_no_clash, extraction_dtype
from pipeline.tasks import TaskSpec, bind_columns, load_task
from pipeline.window import ShardWindow

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
#: How long a run's claim or commit waits for a journal another process holds (``journal prune``,
#: another run) before the engine tries again later: the event loop never waits longer than this.
RUN_JOURNAL_WAIT_S = 0.05


@dataclass(frozen=True)
class Target:
    """Where requests go, and what to call it in the summary."""

    endpoint: Endpoint
    kind: Literal["glm", "emulator", "custom"]
    synthetic: bool = False  # an emulator found at a custom URL by its header

    @property
    def is_emulator(self) -> bool:
        """An emulator answers: the bundled one, or one found at a custom URL."""
        return self.kind == "emulator" or self.synthetic

    @property
    def endpoint_id(self) -> str:
        """What its request keys carry (keys.request_key): synthetic answers apart from real ones."""
        return SYNTHETIC_ENDPOINT if self.is_emulator else ""


@dataclass(frozen=True)
class RunRequest:
    task: str
    input: str
    output: Path
    run_id: str = field(default_factory=lambda: new_run_id())  # noqa: PLW0108 (defined below)
    columns: Mapping[str, str] = field(default_factory=dict)  # task column name → input column
    output_prefix: str = ""  # before every extraction column


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class PreparedRun:
    """A run whose task, input and output have been checked: nothing paid yet."""

    request: RunRequest
    task: TaskSpec
    info: io.InputInfo
    started_at: datetime


def prepare_run(request: RunRequest, settings: Settings) -> PreparedRun:
    """All checks that can fail before money is spent (raise one-line errors)."""
    task = bind_columns(load_task(request.task, settings.schemas_dir), request.columns, request.output_prefix)
    files = io.resolve_inputs(request.input)
    io.check_output_target(request.output, files)  # before the emulator starts or anything is read
    info = check_task_input(task, files)
    check_no_clash(info.columns, task.output_fields, task.name, task.output_prefix)
    return PreparedRun(request, task, info, datetime.now(UTC))


def check_task_input(task: TaskSpec, files: Sequence[Path]) -> io.InputInfo:
    """The input contract for ``task`` (its columns as mapped): ids, text, the columns it reads."""
    mapped = [task.source(name) for name in task.sources if name != task.text_column]
    return io.check_input(files, id_column=task.id_column, text_column=task.text_source, needed=mapped)


def build_context(prepared: PreparedRun, settings: Settings, target: Target, transport: httpx.AsyncBaseTransport,
                  limiter: AdaptiveLimiter, journal: Journal, shared: RunShared | None = None,
                  stats: RunStats | None = None) -> EngineContext:
    """A shard's context: a client for ``target`` over ``transport`` with the settings' timeouts,
    counting into ``stats`` (a new tally without)."""
    timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
    return EngineContext(
        task=prepared.task,
        options=RenderOptions(model=settings.model, mode=settings.mode,
                              max_tokens=settings.max_tokens_for(prepared.task.max_tokens)),
        client=GLMClient(transport, target.endpoint, timeout), limiter=limiter, journal=journal,
        policy=RetryPolicy(settings.max_attempts, settings.backoff_initial_s, settings.backoff_max_s),
        stats=stats if stats is not None else RunStats(), max_reasks=settings.max_reasks,
        price_cny_per_mtok=settings.price_cny_per_mtok, budget_cny=settings.budget_cny, shared=shared or RunShared(),
        endpoint_id=target.endpoint_id,
        price_cached_cny_per_mtok=settings.price_cached_cny_per_mtok,
        budget_price_cached_cny_per_mtok=budget_cached_price(settings),
    )


def budget_cached_price(settings: Settings) -> float | None:
    """The cached-token price the budget counts: the user's (setting, environment), else None — the
    full input price, since the platform's cached price is unconfirmed (docs/glm_platform.md)."""
    return settings.price_cached_cny_per_mtok if "price_cached_cny_per_mtok" in settings.model_fields_set else None


def transport_for(settings: Settings, concurrency: int | None = None) -> httpx.AsyncBaseTransport:
    """The run's one HTTP transport, sized for ``concurrency`` (default: the settings' cap)."""
    return build_transport(concurrency=concurrency or settings.concurrency, transport=settings.transport)



@dataclass(frozen=True)
class ShardsDone:
    """Shards processed into part files, and their tallies."""

    parts: list[Path]
    stats: RunStats

    @classmethod
    def merged(cls, done: Iterable[ShardsDone]) -> ShardsDone:
        """Several calls' shards as one (parts in shard order as given)."""
        parts: list[Path] = []
        stats = RunStats()
        for item in done:
            parts += item.parts
            stats.merge(item.stats)
        return cls(parts, stats)


#: The tallies :meth:`RunStats.note_rows` keeps: how the rows of a written shard ended. The others
#: count requests: what was sent, answered and paid.
ROW_TALLIES = ("rows", "from_journal", "answers_cost_cny", "status_counts", "error_counts", "error_examples")


def requests_part(stats: RunStats) -> RunStats:
    """``stats`` without its row tallies: what its requests sent, answered and cost."""
    empty = RunStats()
    return replace(stats, **{name: getattr(empty, name) for name in ROW_TALLIES})


def rows_part(stats: RunStats) -> RunStats:
    """Only the row tallies of ``stats``."""
    return replace(RunStats(), **{name: getattr(stats, name) for name in ROW_TALLIES})


@dataclass(frozen=True)
class Run:
    """One run, from its checked input to its summary; every run goes through one.

    :meth:`open` plans the output (taking its lock) and owns the HTTP transport; :meth:`shards`
    sends shards through the engine into part files (the CLI passes them all in one call, each
    Prefect shard task one with :meth:`shard`); :meth:`finish` writes the table and the summary
    and returns :class:`~pipeline.summary.RunSummary`. Leaving :meth:`open` removes the parts of a
    run that did not finish; the journal keeps every answer paid for.

    What requests were sent and paid is booked in :attr:`request_tallies` by every call of :meth:`shards`,
    also one that raises (a Prefect shard task that fails after paying and is retried: its retry
    takes the answers from the journal for free, but the money was spent); the summary's rows come
    from the shards that finished.
    """

    prepared: PreparedRun
    settings: Settings
    target: Target
    transport: httpx.AsyncBaseTransport
    plan: io.OutputPlan
    shared: RunShared = field(default_factory=RunShared)  # budget, requests on the wire, stop signal
    clock: float = field(default_factory=time.perf_counter)
    request_tallies: RunStats = field(default_factory=RunStats)  # every shard call's, also failed ones

    @classmethod
    @asynccontextmanager
    async def open(cls, prepared: PreparedRun, settings: Settings, target: Target, *,
                   transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[Run]:
        """The run, ready for shards (``transport``: one the caller owns, else the run's own)."""
        plan = io.plan_output(prepared.request.output, prepared.request.run_id)
        own = transport is None
        wire = transport or transport_for(settings)
        try:
            yield cls(prepared, settings, target, wire, plan)
        finally:
            io.discard_parts(plan)
            if own:
                await wire.aclose()

    async def shards(self, frames: Iterable[tuple[int, pl.DataFrame]], limiter: AdaptiveLimiter,
                     on_progress: Progress | None = None) -> ShardsDone:
        """Process ``(index, frame)`` shards into parts; raise RunAborted on a fatal error. What the
        requests cost is booked in :attr:`request_tallies` whether this returns or raises."""
        stats = RunStats()
        try:
            async with open_journal(self.settings.journal_path, endpoint_id=self.target.endpoint_id) as journal:
                ctx = build_context(self.prepared, self.settings, self.target, self.transport, limiter, journal,
                                    self.shared, stats)
                try:
                    parts = await run_shards(ctx, frames, self.plan, self.prepared.request.run_id, on_progress)
                finally:
                    stop_committing(ctx)
        finally:
            self.request_tallies.merge(requests_part(stats))
        return ShardsDone(parts, stats)

    async def shard(self, spec: io.ShardSpec, limiter: AdaptiveLimiter) -> ShardsDone:
        """One shard, read from its slice of the input (a Prefect shard task's call)."""
        return await self.shards([(spec.index, io.read_shard(spec))], limiter)

    def finish(self, done: ShardsDone, limiter_label: str, *, partition_date: str | None = None,
               shards: int | None = None) -> RunSummary:
        """Write the table from ``done``'s parts and the summary beside it; return the summary (its
        rows from ``done``, its requests and cost from every shard call of this run)."""
        stats = RunStats()
        stats.merge(rows_part(done.stats))
        stats.merge(self.request_tallies)
        summary = build_summary(self.prepared, stats, self.settings, self.target, limiter_label,
                                time.perf_counter() - self.clock)
        if partition_date is not None and shards is not None:
            summary = summary.for_partition(partition_date, shards)
        if summary.budget is not None and summary.budget.over_cny > 0:
            log.warning("%s", summary.budget.describe())
        if summary.tokens.counted_by_rule:
            log.warning("tokens %s", summary.tokens.describe())
        io.finish_output(self.plan, done.parts, summary.to_dict())
        return summary


@asynccontextmanager
async def open_journal(path: Path, *, endpoint_id: str | None = None) -> AsyncIterator[Journal]:
    """The run's journal, opened and closed off the event loop (both may wait for a lock another
    process holds; other shards' answers are read meanwhile), its claims and commits waiting at
    most :data:`RUN_JOURNAL_WAIT_S`. The run marks itself at work on it (``journal prune`` then
    leaves shrinking the file for later). ``endpoint_id``: the run's (its request keys'): the journal
    records which kind of endpoint gave the answers it adds."""
    journal = await asyncio.to_thread(_run_journal, path, endpoint_id)
    try:
        yield journal
    finally:
        await asyncio.to_thread(journal.close)


def _run_journal(path: Path, endpoint_id: str | None) -> Journal:
    journal = Journal(path, endpoint_id=endpoint_id)
    try:
        journal.announce()
    except BaseException:
        journal.close()
        raise
    journal.write_wait_s = RUN_JOURNAL_WAIT_S
    return journal


async def run_extraction(
    request: RunRequest,
    settings: Settings,
    target: Target,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    limiter: AdaptiveLimiter | None = None,
    limiter_label: str = "local",
    on_progress: Progress | None = None,
    prepared: PreparedRun | None = None,
) -> RunSummary:
    """Run end to end in this process (the CLI's run) and return the summary (also written next
    to the output)."""
    prepared = prepared or prepare_run(request, settings)
    async with Run.open(prepared, settings, target, transport=transport) as run:
        frames = enumerate(io.iter_shards(prepared.info.files, settings.shard_size, prepared.info.schema))
        done = await run.shards(frames, limiter or AdaptiveLimiter(settings.concurrency), on_progress)
        return run.finish(done, limiter_label)


async def run_shards(ctx: EngineContext, shards: Iterable[tuple[int, pl.DataFrame]], plan: io.OutputPlan, run_id: str,
                     on_progress: Progress | None = None) -> list[Path]:
    """Process shards, the next one starting whenever the slots would otherwise run dry
    (:class:`~pipeline.window.ShardWindow`); write each as a part; raise RunAborted on a fatal error."""
    parts: dict[int, Path] = {}
    run = RunColumns(ctx.task.name, ctx.task.schema_id, ctx.task.prompt_version, run_id, ctx.task.output_prefix)
    dtype = extraction_dtype(ctx.task.schema)

    async def one(window: ShardWindow, index: int, frame: pl.DataFrame) -> None:
        try:
            metas = await process_shard(ctx, rows_of(frame, ctx.task))
        finally:
            window.done()
        if ctx.stop.reason is not None:
            return  # the run aborts once the other shards settle: no part is worth writing
        # off the event loop: a shard's assembly and write would stall in-flight requests (D16)
        table = await asyncio.to_thread(assemble_shard, frame, ctx.task.id_column, metas, dtype, run)
        ctx.stats.note_rows(table.get_column("_record_id").to_list(), metas)
        parts[index] = await asyncio.to_thread(io.write_part, plan, index, table)
        if on_progress:
            on_progress(frame.height)

    async with ShardWindow(ctx.limiter) as window, asyncio.TaskGroup() as group:
        for index, frame in shards:
            await window.admit()
            if ctx.stop.is_set():
                window.done()
                break
            group.create_task(one(window, index, frame))
    reason = ctx.stop.reason
    if reason is not None:
        raise RunAborted(f"run stopped: {reason} — {reason.hint}", code=reason.code)
    return [parts[i] for i in sorted(parts)]


def build_summary(prepared: PreparedRun, stats: RunStats, settings: Settings, target: Target,
                  limiter_label: str, seconds: float) -> RunSummary:
    """The run summary of docs/contracts.md §4 from the run's tallies."""
    request, task = prepared.request, prepared.task
    return RunSummary(
        run_id=request.run_id, task=task.name, input=request.input, output=str(request.output),
        started_at=prepared.started_at.isoformat(), finished_at=datetime.now(UTC).isoformat(),
        seconds=round(seconds, 3), rows=stats.rows, status_counts=stats.status_table(),
        requests=Requests(sent=stats.requests_sent, answered=stats.answered, from_journal=stats.from_journal,
                          retries=stats.retries, rate_limited=stats.rate_limited, reasks=stats.reasks),
        tokens=Tokens(prompt=stats.prompt_tokens, completion=stats.completion_tokens, cached=stats.cached_tokens,
                      counted_by_rule=stats.usage_counted),
        cost_cny=round(stats.cost_cny, 6), answers_cost_cny=round(stats.answers_cost_cny, 6),
        cost_split=CostSplit(**stats.cost_split()),
        latency_ms=Latency(p50=stats.percentile_ms(0.5), p95=stats.percentile_ms(0.95)),
        rows_per_second=round(stats.rows / seconds, 2) if seconds > 0 else None,
        model=settings.model, prompt_version=task.prompt_version, schema_id=task.schema_id,
        endpoint=target.kind, base_url=without_credentials(target.endpoint.base_url),
        offline_emulator=target.kind == "emulator", limiter=limiter_label,
        synthetic=target.is_emulator or stats.synthetic_answers > 0,
        concurrency=settings.concurrency, errors=stats.errors(),
        estimate=EstimateCheck(**estimate_check(task.schema, stats.rule_prompt_tokens, stats.first_answers,
                                                stats.prompt_tokens, stats.completion_tokens)),
        budget=budget_check(stats, settings),
    )


def budget_check(stats: RunStats, settings: Settings) -> BudgetCheck | None:
    """What the run spent as its budget counts money (None without a budget)."""
    limit = settings.budget_cny
    if limit is None:
        return None
    explicit = budget_cached_price(settings)
    cached_price = settings.price_cny_per_mtok if explicit is None else explicit
    full = stats.prompt_tokens - stats.cached_tokens + stats.completion_tokens
    spent = (full * settings.price_cny_per_mtok + stats.cached_tokens * cached_price) / 1_000_000
    return BudgetCheck(limit_cny=limit, spent_cny=round(spent, 6), cached_price_cny_per_mtok=cached_price,
                       over_cny=round(max(0.0, spent - limit), 6))
