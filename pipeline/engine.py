"""A shard: render → skip what the journal knows → dispatch → judge → re-ask → journal.

Every input row ends in exactly one :class:`~pipeline.tables.RowMeta`; nothing raises for a bad
row. Only a fatal, account-wide error (:class:`~pipeline.glm.errors.FatalError`) stops the run:
it sets ``abort`` so no further request starts, and is re-raised by :func:`process_shard`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema_rs
import orjson
import polars as pl

from pipeline.glm.client import GLMClient
from pipeline.glm.errors import FatalError, RowError, TransientError
from pipeline.glm.retry import AttemptLog, RetryPolicy, RunStopping, send_with_retry
from pipeline.journal import Journal, JournalEntry
from pipeline.keys import request_key
from pipeline.limiter import AdaptiveLimiter
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.stats import RunStats, Spend
from pipeline.tables import RowMeta, extraction_dtype, has_free_form, json_text_for
from pipeline.tasks import TaskSpec
from pipeline.validate import Filtered, Reask, Valid, build_reask, compile_validator, judge


@dataclass
class RunShared:
    """What every shard of one run shares, whichever context or Prefect task processes it: the
    money spent (so the budget holds across shards) and the requests on the wire (so a document
    that two shards hold at once is paid for once)."""

    spend: Spend = field(default_factory=Spend)
    inflight: dict[str, asyncio.Future[JournalEntry]] = field(default_factory=dict)


@dataclass
class EngineContext:
    """Everything a shard needs; built once per run (or per Prefect shard task)."""

    task: TaskSpec
    options: RenderOptions
    client: GLMClient
    limiter: AdaptiveLimiter
    journal: Journal
    policy: RetryPolicy
    stats: RunStats
    max_reasks: int = 2
    price_cny_per_mtok: float = 0.5
    budget_cny: float | None = None
    abort: asyncio.Event | None = None
    fatal: FatalError | None = None
    shared: RunShared = field(default_factory=RunShared)
    endpoint_id: str = ""  # "emulator" keeps synthetic answers out of real ones (see keys.request_key)

    def __post_init__(self) -> None:
        self.validator: jsonschema_rs.Validator = compile_validator(self.task.schema)
        self.system = system_message(self.task, self.options.mode)
        self.answer_dtype = extraction_dtype(self.task.schema)
        self.free_form = has_free_form(self.task.schema)
        if self.abort is None:
            self.abort = asyncio.Event()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens + completion_tokens) * self.price_cny_per_mtok / 1_000_000


@dataclass(frozen=True)
class _Planned:
    meta: RowMeta | None  # decided without a request (skipped / failed before sending)
    key: str | None
    body: dict[str, Any] | None


async def process_shard(ctx: EngineContext, rows: Iterable[Mapping[str, Any]]) -> list[RowMeta]:
    """One outcome per row, in order. Raises the run's FatalError after in-flight work settles."""
    planned: list[_Planned] = []
    for index, row in enumerate(rows):
        planned.append(plan_row(ctx, row))
        if index % 100 == 99:
            await asyncio.sleep(0)  # let answers of the previous shard be read meanwhile
    keys = [p.key for p in planned if p.key is not None]
    known = ctx.journal.lookup(keys)
    todo = {p.key: p.body for p in planned if p.key and p.body is not None and p.key not in known}
    fresh: dict[str, JournalEntry] = {}
    borrowed: set[str] = set()
    async with asyncio.TaskGroup() as group:
        for key, body in todo.items():
            owner = ctx.shared.inflight.get(key)
            if owner is not None:  # another shard of this run is already paying for it
                group.create_task(_borrow(ctx, owner, key, body, fresh, borrowed))
            else:
                ctx.shared.inflight[key] = asyncio.get_running_loop().create_future()
                group.create_task(_answer_into(ctx, key, body, fresh))
    ctx.journal.flush()
    if ctx.fatal is not None:
        raise ctx.fatal
    return _row_metas(ctx, planned, known, fresh, borrowed)


async def _borrow(ctx: EngineContext, owner: asyncio.Future[JournalEntry], key: str, body: dict[str, Any],
                  out: dict[str, JournalEntry], borrowed: set[str]) -> None:
    """Wait for the shard that is paying for ``key``. If that shard is cancelled before it has an
    answer (e.g. its Prefect task was), the first shard still waiting pays instead."""
    while True:
        try:
            out[key] = await asyncio.shield(owner)
        except asyncio.CancelledError:
            this_task = asyncio.current_task()
            if not owner.cancelled() or (this_task is not None and this_task.cancelling()):
                raise  # this shard itself is being cancelled
        else:
            borrowed.add(key)
            return
        successor = ctx.shared.inflight.get(key)
        if successor is None:
            ctx.shared.inflight[key] = asyncio.get_running_loop().create_future()
            await _answer_into(ctx, key, body, out)
            return
        owner = successor


def plan_row(ctx: EngineContext, row: Mapping[str, Any]) -> _Planned:
    """Decide, without the network, whether a row needs a request, and render it."""
    text = row.get(ctx.task.text_column)
    if text is None or (isinstance(text, str) and not text.strip()):
        return _Planned(_local_meta("skipped", "empty_text", "the text column is null or blank"), None, None)
    limit = ctx.task.max_input_chars
    if limit is not None and isinstance(text, str) and len(text) > limit:
        message = f"text has {len(text)} characters, over the task's max_input_chars={limit}"
        return _Planned(_local_meta("failed", "input_too_long", message), None, None)
    body = render_request(ctx.task, row, ctx.options, ctx.system)
    return _Planned(None, request_key(body, ctx.endpoint_id), body)


async def _answer_into(ctx: EngineContext, key: str, body: dict[str, Any], out: dict[str, JournalEntry]) -> None:
    try:
        entry, raw = await answer_request(ctx, key, body)
    except asyncio.CancelledError:
        ctx.shared.inflight.pop(key).cancel()  # borrowers are cancelled too; nothing left unretrieved
        raise
    except BaseException as exc:
        ctx.shared.inflight.pop(key).set_exception(exc)
        raise
    out[key] = entry
    ctx.shared.inflight.pop(key).set_result(entry)
    if entry.final:
        ctx.journal.add(entry, raw)
        if ctx.journal.pending == 1:  # first of this loop tick: commit the tick's batch soon
            asyncio.get_running_loop().call_soon(ctx.journal.flush)


@dataclass
class _Tally:
    """What one row's requests cost so far (every attempt and re-ask of it)."""

    attempts: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def answer_request(ctx: EngineContext, key: str, body: dict[str, Any]) -> tuple[JournalEntry, bytes | None]:
    """Fetch, judge and (bounded) re-ask one request; never raises for a row-level problem."""
    assert ctx.abort is not None
    tally = _Tally()
    if ctx.budget_cny is not None and ctx.shared.spend.cny >= ctx.budget_cny:
        message = f"the run's budget of {ctx.budget_cny} CNY was reached"
        return _entry(ctx, key, "skipped", tally, final=False, code="budget_reached", message=message), None
    current = body
    while True:
        log = AttemptLog()
        try:
            try:
                answer = await send_with_retry(ctx.client, current, ctx.limiter, ctx.policy, ctx.abort, log)
            finally:  # count this send's attempts before any entry below copies the tally
                tally.attempts += log.attempts
                ctx.stats.note_attempts(log)
        except FatalError as exc:
            ctx.fatal = ctx.fatal or exc
            ctx.abort.set()
            return _entry(ctx, key, "failed", tally, final=False, code=exc.code, message=exc.message), None
        except RowError as exc:
            status = "filtered" if exc.filtered else "failed"
            final = exc.judged_content  # only the platform's verdict on this content is kept for good
            return _entry(ctx, key, status, tally, final=final, code=exc.code, message=exc.message), None
        except TransientError as exc:
            message = f"gave up after {log.attempts} attempts: {exc.message}"
            return _entry(ctx, key, "failed", tally, final=False, code=exc.code, message=message), None
        except RunStopping:
            message = "not sent: the run stopped first"
            return _entry(ctx, key, "failed", tally, final=False, code="run_aborted", message=message), None
        tally.prompt_tokens += answer.prompt_tokens
        tally.completion_tokens += answer.completion_tokens
        cost = ctx.cost(answer.prompt_tokens, answer.completion_tokens)
        ctx.shared.spend.cny += cost
        ctx.stats.note_answer(answer.latency_ms, answer.prompt_tokens, answer.completion_tokens, cost)
        verdict = judge(answer.content, answer.finish_reason, ctx.validator)
        if isinstance(verdict, Reask) and tally.reasks < ctx.max_reasks:
            current = build_reask(current, answer.content, verdict)
            tally.reasks += 1
            ctx.stats.reasks += 1
            continue
        entry = _judged_entry(ctx, key, verdict, tally)
        entry = replace(entry, latency_ms=answer.latency_ms, finish_reason=answer.finish_reason,
                        request_id=answer.request_id)
        return entry, answer.raw


def _judged_entry(ctx: EngineContext, key: str, verdict: Valid | Reask | Filtered, tally: _Tally) -> JournalEntry:
    if isinstance(verdict, Valid):
        data = json_text_for(verdict.data, ctx.answer_dtype) if ctx.free_form else verdict.data
        return _entry(ctx, key, "ok", tally, data_json=orjson.dumps(data).decode())
    if isinstance(verdict, Filtered):
        return _entry(ctx, key, "filtered", tally, code=verdict.code, message=verdict.message)
    message = f"{verdict.code} after {tally.reasks} re-asks: {'; '.join(verdict.errors)[:500]}"
    return _entry(ctx, key, "invalid", tally, code=verdict.code, message=message)


def _entry(ctx: EngineContext, key: str, status: str, tally: _Tally, *, final: bool = True,
           data_json: str | None = None, code: str | None = None, message: str | None = None) -> JournalEntry:
    return JournalEntry(
        key=key, status=status, final=final, data_json=data_json, error_code=code, error_message=message,
        attempts=tally.attempts, reasks=tally.reasks, prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens, latency_ms=None, finish_reason=None,
        model=ctx.options.model, request_id=None, task=ctx.task.name, schema_id=ctx.task.schema_id,
    )


def _local_meta(status: str, code: str, message: str) -> RowMeta:
    return RowMeta(status=status, error_code=code, error_message=message, attempts=0, reasks=0,
                   prompt_tokens=0, completion_tokens=0, cost_cny=0.0, latency_ms=None, finish_reason=None,
                   model=None, request_id=None, key=None, from_journal=False, data_json=None)


def _row_metas(ctx: EngineContext, planned: list[_Planned], known: dict[str, JournalEntry],
               fresh: dict[str, JournalEntry], borrowed: set[str]) -> list[RowMeta]:
    metas: list[RowMeta] = []
    paid = set(borrowed)
    for plan in planned:
        if plan.meta is not None:
            metas.append(plan.meta)
            continue
        assert plan.key is not None  # a row without a local verdict always has a request
        entry = fresh.get(plan.key)
        from_journal = entry is None or plan.key in paid
        entry = entry or known[plan.key]
        paid.add(plan.key)
        metas.append(meta_from_entry(ctx, entry, from_journal=from_journal))
    return metas


def meta_from_entry(ctx: EngineContext, entry: JournalEntry, *, from_journal: bool) -> RowMeta:
    """The output meta of a row answered by ``entry``; nothing is charged twice."""
    prompt = 0 if from_journal else entry.prompt_tokens
    completion = 0 if from_journal else entry.completion_tokens
    return RowMeta(
        status=entry.status, error_code=entry.error_code, error_message=entry.error_message,
        attempts=0 if from_journal else entry.attempts, reasks=0 if from_journal else entry.reasks,
        prompt_tokens=prompt, completion_tokens=completion, cost_cny=ctx.cost(prompt, completion),
        latency_ms=entry.latency_ms, finish_reason=entry.finish_reason, model=entry.model,
        request_id=entry.request_id, key=entry.key, from_journal=from_journal,
        data_json=entry.data_json if entry.status == "ok" else None,
    )


def rows_of(frame: pl.DataFrame, task: TaskSpec) -> list[dict[str, Any]]:
    """The columns a prompt needs, as dicts (only those columns, to keep it cheap)."""
    columns = list(dict.fromkeys([*task.template_columns, task.text_column]))
    return frame.select(columns).to_dicts()
