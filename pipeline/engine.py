"""A shard: render → skip what the journal knows → dispatch → judge → re-ask → journal.

Every input row ends in exactly one :class:`~pipeline.tables.RowMeta`; nothing raises for a bad
row. Only a fatal, account-wide error (:class:`~pipeline.glm.errors.FatalError`) stops the run:
it is handed to the run's one stop signal (:class:`~pipeline.glm.retry.RunStop`), so no further
request starts and what is on the wire is cancelled; the rows it did not answer end ``failed`` with
``run_aborted``, and the runner turns the stop's reason into :class:`~pipeline.errors.RunAborted`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema_rs
import orjson
import polars as pl

from pipeline.budget import Budget, BudgetReached, PromptCount
from pipeline.glm.client import ChatAnswer, GLMClient
from pipeline.glm.errors import FatalError, RowError, TransientError
from pipeline.glm.retry import AttemptLog, RetryPolicy, RunStop, RunStopping, send_with_retry
from pipeline.journal import (
    REASK_PENDING,
    REASK_UNANSWERED,
    Journal,
    JournalBusy,
    JournalEntry,
    JournalError,
    is_reask_due,
)
from pipeline.keys import SYNTHETIC_ENDPOINT, request_key
from pipeline.limiter import AdaptiveLimiter, paid_rows_first
from pipeline.outcomes import local_outcome
from pipeline.packing import PackRow, is_packed_request_id, item_tokens, plan_packs, settings_for
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.stats import RunStats
from pipeline.tables import RowMeta, extraction_dtype, has_free_form, json_text_for, prompt_rows
from pipeline.tasks import TaskSpec
from pipeline.tokens import count_prompt_tokens
from pipeline.validate import Filtered, Reask, Valid, build_reask, compile_validator, judge, owed_verdict

CLAIM_POLL_S = 0.25  # how often a run waiting for another run's answers looks in the journal
COMMIT_RETRY_S = 0.2  # when another process holds the journal, answers are committed again this much later


@dataclass
class RunShared:
    """What every shard of one run shares, whichever context or Prefect task processes it: the
    money spent and reserved (so the budget holds across shards), the requests on the wire (so a
    document that two shards hold at once is paid for once), and the stop signal (a fatal error
    in one shard stops them all and cancels what is on the wire)."""

    budget: Budget = field(default_factory=Budget)
    inflight: dict[str, asyncio.Future[JournalEntry]] = field(default_factory=dict)
    stop: RunStop = field(default_factory=RunStop)


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
    price_cached_cny_per_mtok: float | None = None  # None: cached prompt tokens cost the full price
    budget_cny: float | None = None
    budget_price_cached_cny_per_mtok: float | None = None  # the budget's; None: the full price (unconfirmed)
    shared: RunShared = field(default_factory=RunShared)
    endpoint_id: str = ""  # "emulator" keeps synthetic answers out of real ones (see keys.request_key)
    commit_retry: asyncio.TimerHandle | None = field(default=None, init=False)  # a commit the journal's lock put off
    commits_closed: bool = field(default=False, init=False)  # the journal is being closed (off the loop)
    resumes: dict[str, JournalEntry] = field(default_factory=dict, init=False)  # paid answers whose re-ask is due

    def __post_init__(self) -> None:
        self.validator: jsonschema_rs.Validator = compile_validator(self.task.schema)
        self.system = system_message(self.task, self.options.mode)
        self.answer_dtype = extraction_dtype(self.task.schema)
        self.free_form = has_free_form(self.task.schema)

    @property
    def stop(self) -> RunStop:
        """The run's stop signal, shared by every shard (a fatal error in one stops them all)."""
        return self.shared.stop

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """What usage costs at the run's prices (what ``cost_cny`` reports)."""
        return self._priced(prompt_tokens, completion_tokens, cached_tokens, self.price_cached_cny_per_mtok)

    def budget_cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """What usage costs as the budget counts it: cached tokens at the full price unless the
        user set their price (the platform's cached price is unconfirmed)."""
        return self._priced(prompt_tokens, completion_tokens, cached_tokens, self.budget_price_cached_cny_per_mtok)

    def _priced(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int,
                cached_price: float | None) -> float:
        cached_price = self.price_cny_per_mtok if cached_price is None else cached_price
        full = prompt_tokens - cached_tokens + completion_tokens
        return (full * self.price_cny_per_mtok + cached_tokens * cached_price) / 1_000_000


@dataclass(frozen=True)
class _Planned:
    meta: RowMeta | None  # decided without a request (skipped / failed before sending)
    key: str | None
    body: dict[str, Any] | None


async def process_shard(ctx: EngineContext, rows: Iterable[Mapping[str, Any]]) -> list[RowMeta]:
    """One outcome per row, in order, once in-flight work settles (also when the run stops).

    A key another shard of this run is sending is borrowed from it; a key another run sharing the
    journal has claimed is waited for (:func:`_wait_for_other_runs`); the rest is claimed and sent."""
    planned: list[_Planned] = []
    first_row: dict[str, Mapping[str, Any]] = {}  # a request key → the first row rendering it (packing)
    for index, row in enumerate(rows):
        planned.append(plan := plan_row(ctx, row))
        if plan.key is not None:
            first_row.setdefault(plan.key, row)
        if index % 100 == 99:
            await asyncio.sleep(0)  # let answers of the previous shard be read meanwhile
    keys = [p.key for p in planned if p.key is not None]
    known = _due_reasks_apart(ctx, ctx.journal.lookup(keys))
    todo = {p.key: p.body for p in planned if p.key and p.body is not None and p.key not in known}
    fresh: dict[str, JournalEntry] = {}
    borrowed: set[str] = set()
    local = {key for key in todo if key in ctx.shared.inflight}
    mine = _claim(ctx, [key for key in todo if key not in local])
    waiting = {key: body for key, body in todo.items() if key not in local and key not in mine}
    packs = _packs(ctx, [key for key in todo if key in mine and key not in ctx.resumes], todo, first_row)
    packed = {member.key for pack in packs for member in pack}
    keeper = asyncio.create_task(_keep_claims(ctx)) if mine or waiting else None
    try:
        async with asyncio.TaskGroup() as group:
            for pack in packs:
                _start_pack(ctx, group, pack, fresh)
            for key, body in todo.items():
                if key not in packed and (key in local or key in mine):
                    _start(ctx, group, key, body, fresh, borrowed)
            if waiting:
                group.create_task(_wait_for_other_runs(ctx, group, waiting, first_row, fresh, borrowed))
    finally:
        if keeper is not None:
            keeper.cancel()
    _commit(ctx)
    return _row_metas(ctx, planned, known, fresh, borrowed)


def _due_reasks_apart(ctx: EngineContext, found: dict[str, JournalEntry]) -> dict[str, JournalEntry]:
    """``found`` without the entries whose re-ask is due; those go to ``ctx.resumes`` (to be claimed
    and re-asked alone)."""
    due = {key: entry for key, entry in found.items() if is_reask_due(entry)}
    ctx.resumes.update(due)
    return {key: entry for key, entry in found.items() if key not in due}


def _start(ctx: EngineContext, group: asyncio.TaskGroup, key: str, body: dict[str, Any],
           out: dict[str, JournalEntry], borrowed: set[str]) -> None:
    """Answer ``key``: borrow it from the shard of this run that is paying for it, or pay."""
    owner = ctx.shared.inflight.get(key)
    if owner is not None:
        group.create_task(_borrow(ctx, owner, key, body, out, borrowed))
    else:
        ctx.shared.inflight[key] = asyncio.get_running_loop().create_future()
        group.create_task(_answer_into(ctx, key, body, out))


def _packs(ctx: EngineContext, keys: list[str], bodies: Mapping[str, dict[str, Any]],
           rows: Mapping[str, Mapping[str, Any]]) -> list[list[PackRow]]:
    """The packs of a packing task among ``keys`` (claimed by this shard, in input order); a row
    alone in its group is left out (sent unpacked). Empty when the task does not pack."""
    settings = settings_for(ctx.task, ctx.options)
    if settings is None or len(keys) < 2:
        return []
    members = [PackRow(key, bodies[key], rows[key]) for key in keys]
    groups = plan_packs([item_tokens(ctx.task, member.row) for member in members], settings)
    return [[members[i] for i in group] for group in groups if len(group) > 1]


def _start_pack(ctx: EngineContext, group: asyncio.TaskGroup, pack: list[PackRow],
                out: dict[str, JournalEntry]) -> None:
    """Answer the rows of ``pack`` with one request (other shards borrow each row's answer)."""
    for member in pack:
        ctx.shared.inflight[member.key] = asyncio.get_running_loop().create_future()
    group.create_task(_answer_pack_into(ctx, pack, out))


async def _answer_pack_into(ctx: EngineContext, pack: list[PackRow], out: dict[str, JournalEntry]) -> None:
    """Each row of ``pack`` is settled (handed to its borrowers, journaled) as soon as it has its
    outcome: a pack's usable records as soon as the pack is judged, not after its other rows."""
    from pipeline.packed_requests import answer_pack  # it builds on this module's request path

    waiting = {member.key for member in pack}

    def settle(member: PackRow, entry: JournalEntry, raw: bytes | None) -> None:
        waiting.discard(member.key)
        _settle(ctx, member.key, entry, raw, out)

    try:
        await answer_pack(ctx, pack, settle)
    except asyncio.CancelledError:
        for key in waiting:
            ctx.shared.inflight.pop(key).cancel()
        raise
    except BaseException as exc:
        for key in waiting:
            _fail_borrowers(ctx.shared.inflight.pop(key), exc)
        raise


#: Hands a row's outcome over as soon as it has one: to this shard, to its borrowers, to the journal.
Settle = Callable[[PackRow, JournalEntry, bytes | None], None]


def _claim(ctx: EngineContext, keys: list[str]) -> set[str]:
    """Claim ``keys`` in the journal for this run (none granted once the run is stopping, nor while
    another process holds the journal: then the keys wait, and are claimed at a later look). A
    granted key another run has journaled owed its re-ask since this run looked is re-asked from
    that answer (:data:`EngineContext.resumes`), never paid for again."""
    if not keys or ctx.stop.is_set():
        return set()
    try:
        granted, owed = ctx.journal.claim_owed(keys)
        ctx.resumes.update(owed)
        return granted
    except JournalBusy:
        return set()
    except JournalError as exc:
        _stop_on_journal_failure(ctx, exc)
        return set()


async def _keep_claims(ctx: EngineContext) -> None:
    """Push this run's claims forward while it works, so only a dead run's claims lapse."""
    while True:
        await asyncio.sleep(ctx.journal.claim_ttl_s / 4)
        try:
            ctx.journal.renew()
        except JournalBusy:
            continue  # renewed at the next turn, well before the claims lapse
        except JournalError as exc:
            _stop_on_journal_failure(ctx, exc)
            return


async def _wait_for_other_runs(ctx: EngineContext, group: asyncio.TaskGroup, waiting: dict[str, dict[str, Any]],
                               rows: Mapping[str, Mapping[str, Any]], out: dict[str, JournalEntry],
                               borrowed: set[str]) -> None:
    """Keys this shard could not claim (another run holds them, or another process held the journal):
    take their answers from the journal as they are committed, and claim (then pay for, packed as
    at the start) what that run gave up on or abandoned (its claim expired)."""
    remaining = dict(waiting)
    while remaining and not ctx.stop.is_set():
        await asyncio.sleep(CLAIM_POLL_S)
        try:
            found = _due_reasks_apart(ctx, ctx.journal.lookup(remaining))
        except JournalError as exc:
            _stop_on_journal_failure(ctx, exc)
            return
        for key, entry in found.items():
            out[key] = entry
            borrowed.add(key)
            del remaining[key]
        _start_claimed(ctx, group, remaining, _claim(ctx, list(remaining)), rows, out, borrowed)


def _start_claimed(ctx: EngineContext, group: asyncio.TaskGroup, remaining: dict[str, dict[str, Any]],
                   claimed: set[str], rows: Mapping[str, Mapping[str, Any]], out: dict[str, JournalEntry],
                   borrowed: set[str]) -> None:
    """Answer the ``claimed`` keys of ``remaining`` (taking them out of it): packed where the task
    packs, unless another shard of this run is sending them (then borrowed)."""
    keys = [key for key in remaining if key in claimed]  # input order
    bodies = {key: remaining.pop(key) for key in keys}
    packs = _packs(ctx, [key for key in keys if key not in ctx.shared.inflight and key not in ctx.resumes],
                   bodies, rows)
    packed = {member.key for pack in packs for member in pack}
    for pack in packs:
        _start_pack(ctx, group, pack, out)
    for key in keys:
        if key not in packed:
            _start(ctx, group, key, bodies[key], out, borrowed)


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
    local = local_outcome(ctx.task, row)
    if local is not None:
        return _Planned(_local_meta(local.status, local.code, local.message), None, None)
    body = render_request(ctx.task, row, ctx.options, ctx.system)
    return _Planned(None, request_key(body, ctx.endpoint_id), body)


async def _answer_into(ctx: EngineContext, key: str, body: dict[str, Any], out: dict[str, JournalEntry]) -> None:
    try:
        entry, raw = await answer_request(ctx, key, body)
    except asyncio.CancelledError:
        ctx.shared.inflight.pop(key).cancel()  # borrowers are cancelled too; nothing left unretrieved
        raise
    except BaseException as exc:
        _fail_borrowers(ctx.shared.inflight.pop(key), exc)
        raise
    _settle(ctx, key, entry, raw, out)


def _settle(ctx: EngineContext, key: str, entry: JournalEntry, raw: bytes | None,
            out: dict[str, JournalEntry]) -> None:
    """``key`` has its outcome: this shard's, its borrowers', and the journal's (if it is kept)."""
    out[key] = entry
    ctx.shared.inflight.pop(key).set_result(entry)
    keep_in_journal(ctx, entry, raw)


def keep_in_journal(ctx: EngineContext, entry: JournalEntry, raw: bytes | None) -> None:
    """Queue ``entry`` for the journal (a non-final entry is not kept: only its claim is released);
    the first entry of a loop tick has the tick's batch committed soon."""
    first = not ctx.journal.pending
    ctx.journal.add(entry, raw)
    if first and ctx.journal.pending:
        asyncio.get_running_loop().call_soon(_commit, ctx)


def _fail_borrowers(owner: asyncio.Future[JournalEntry], exc: BaseException) -> None:
    """Hand ``exc`` to the shards waiting on ``owner``. The error itself reaches the run through the
    task that raised it; the future's copy is marked seen, so a future nobody waits on does not log
    "Future exception was never retrieved" once per request."""
    owner.set_exception(exc)
    owner.exception()


def _commit(ctx: EngineContext) -> None:
    """Flush the journal; if the file refuses the commit, stop the run at once. If another process
    holds the journal, the answers stay queued and are committed a little later (one retry pending
    at a time; until then other commits leave them to it)."""
    if ctx.journal.failure is not None or ctx.commit_retry is not None or ctx.commits_closed:
        return
    try:
        ctx.journal.flush()
    except JournalBusy:
        ctx.commit_retry = asyncio.get_running_loop().call_later(COMMIT_RETRY_S, _retry_commit, ctx)
    except JournalError as exc:
        _stop_on_journal_failure(ctx, exc)


def _retry_commit(ctx: EngineContext) -> None:
    ctx.commit_retry = None
    _commit(ctx)


def stop_committing(ctx: EngineContext) -> None:
    """No more commits from the event loop, also none already scheduled: the journal is about to be
    closed in another thread (which commits the rest), and must not be used from two at once."""
    ctx.commits_closed = True
    if ctx.commit_retry is not None:
        ctx.commit_retry.cancel()
        ctx.commit_retry = None


def _stop_on_journal_failure(ctx: EngineContext, exc: JournalError) -> None:
    """Answers that cannot be kept must not be paid for: no further request starts."""
    ctx.stop.stop(FatalError(f"{exc}; no further request was sent", code="journal_write_failed"))


@dataclass
class RowSpend:
    """What a row's requests took (every attempt and re-ask of it): attempts, re-asks, tokens and money;
    tallied as they are sent, or read off a journal entry."""

    attempts: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cny: float = 0.0
    counted_prompt: int = 0  # our count of the row's first (unpacked) prompt once answered (the estimate's)

    @classmethod
    def of(cls, entry: JournalEntry, cost_cny: float) -> RowSpend:
        return cls(entry.attempts, entry.reasks, entry.prompt_tokens, entry.completion_tokens, cost_cny,
                   entry.counted_prompt)

    def less(self, other: RowSpend) -> RowSpend:
        """What this spent beyond ``other`` (the count of the first prompt is not a spend: kept)."""
        return RowSpend(self.attempts - other.attempts, self.reasks - other.reasks,
                        self.prompt_tokens - other.prompt_tokens, self.completion_tokens - other.completion_tokens,
                        self.cost_cny - other.cost_cny, self.counted_prompt)


@dataclass
class _BudgetAdmission:
    """Admits an attempt of one request body if its worst case fits under the run's budget; the
    worst case is priced at each attempt, so it uses what the budget has learnt meanwhile."""

    ctx: EngineContext
    counted_prompt: PromptCount  # the body's prompt tokens by the rule of thumb, and its kind of text
    answer_tokens: int
    paid_row: bool = False  # the row has a paid answer already: its re-ask goes first

    def worst_cny(self) -> float:
        prompt = math.ceil(self.ctx.shared.budget.prompt_tokens(self.counted_prompt))
        return self.ctx.budget_cost(prompt, self.answer_tokens)

    async def admit(self) -> float:
        budget = self.ctx.shared.budget
        return await budget.reserve(self.worst_cny, self.ctx.budget_cny, paid_row=self.paid_row,
                                    kind=self.counted_prompt.kind)

    def refund(self, reserved: float) -> None:
        self.ctx.shared.budget.release(reserved, self.counted_prompt.kind)


def admission_for(ctx: EngineContext, body: Mapping[str, Any], *, paid_row: bool = False) -> _BudgetAdmission | None:
    """The budget's admission of ``body``'s attempts; none without a budget (nothing to reserve, so
    the prompt is not counted on every attempt for it)."""
    if ctx.budget_cny is None:
        return None
    counted = PromptCount.of(body["messages"], body.get("tools"))
    return _BudgetAdmission(ctx, counted, int(body.get("max_tokens") or ctx.options.max_tokens), paid_row)


def worst_case_cny(ctx: EngineContext, body: Mapping[str, Any]) -> float:
    """The most one request of ``body`` can cost as the budget counts it now: its prompt (each part
    at the budget's scale for its kind of text) plus a full answer."""
    counted = PromptCount.of(body["messages"], body.get("tools"))
    return _BudgetAdmission(ctx, counted, int(body.get("max_tokens") or ctx.options.max_tokens)).worst_cny()


@dataclass
class _Asking:
    """Where one row's requests stand: the request to send next and what the row paid so far."""

    current: dict[str, Any]
    tally: RowSpend
    reask_due: bool  # the next request is a re-ask, counted as one once it goes on the wire
    most_reasks: int
    paid: ChatAnswer | JournalEntry | None = None  # the last paid answer (a resumed row: its entry)
    before: JournalEntry | None = None  # a resumed row: its entry as the earlier run left it
    after_pack: bool = False  # its pack's share is paid (no answer of its own yet)
    reask_on_wire: bool = False  # a re-ask went out and has no answer yet (then it does not count as asked)

    @property
    def paid_row(self) -> bool:
        """The row has a paid answer (or a pack's share): its requests go first, and are owed."""
        return self.paid is not None or self.after_pack

    def note_sent(self, ctx: EngineContext, log: AttemptLog) -> None:
        """Count this send's attempts, and the re-ask once one of its attempts went out."""
        self.tally.attempts += log.attempts
        ctx.stats.note_attempts(log)
        if self.reask_due and log.attempts:
            self.reask_due = False
            self.reask_on_wire = True
            self.tally.reasks += 1
            ctx.stats.reasks += 1

    def answered_reasks(self) -> int:
        """Re-asks the model answered (``--max-reasks`` counts these; ``tally.reasks`` counts those sent)."""
        return self.tally.reasks - int(self.reask_on_wire)


def _asking(ctx: EngineContext, key: str, body: dict[str, Any], after_pack: bool, spent: RowSpend | None) -> _Asking:
    """A row's first request; after a pack, its request alone (a re-ask; ``spent``: its share of the
    pack); or, for a row a run before this one paid an answer for and still owes its re-ask, that re-ask."""
    earlier = None if after_pack else ctx.resumes.get(key)
    if earlier is None:
        return _Asking(body, spent or RowSpend(), after_pack, ctx.max_reasks + int(after_pack), after_pack=after_pack)
    tally = spent_before(earlier, earlier.cost_cny or 0.0)
    if earlier.request_id is None:  # its pack's share was paid; the request alone was not sent
        return _Asking(body, tally, True, ctx.max_reasks + 1, earlier, earlier)
    reask = build_reask(body, earlier.answer, owed_verdict(earlier.answer, earlier.finish_reason, ctx.validator))
    return _Asking(reask, tally, True, ctx.max_reasks, earlier, earlier)


def spent_before(earlier: JournalEntry, cost_cny: float) -> RowSpend:
    """What the runs before this one spent on a row left owed its re-ask. A re-ask they sent that got
    no answer (``reask_unanswered``) is owed again and counted once: sending it again is that re-ask,
    not one more (so ``--max-reasks`` counts answered re-asks, however often one went unanswered)."""
    spent = RowSpend.of(earlier, cost_cny)
    if earlier.error_code == REASK_UNANSWERED:
        spent.reasks = max(0, spent.reasks - 1)
    return spent


async def answer_request(ctx: EngineContext, key: str, body: dict[str, Any], *,
                         after_pack: bool = False, spent: RowSpend | None = None) -> tuple[JournalEntry, bytes | None]:
    """Fetch, judge and (bounded) re-ask one request; never raises for a row-level problem.

    ``after_pack``: the row's first request was a pack that gave no usable record for it (``spent``:
    its share), so this request is already a re-ask (counted and booked as one); the usual re-asks
    still follow. A re-ask is counted once it is sent. A paid answer that needs a re-ask is journaled
    at once, owed that re-ask (``invalid``/``reask_pending``), so a run stopped before the row is
    final sends only the re-ask when run again (:func:`_asking`); so is one whose re-ask the budget
    refuses (``budget_reached``). A re-ask owed from an earlier run is not sent when ``max_reasks``
    does not allow it (the row ends ``invalid``, still owed)."""
    asking = _asking(ctx, key, body, after_pack, spent)
    earlier = asking.before
    if earlier is not None and earlier.request_id is not None and asking.answered_reasks() >= ctx.max_reasks:
        return replace(_still_owed(ctx, key, earlier), before=earlier), None
    entry, raw = await _ask(ctx, key, body, asking)
    return (entry if earlier is None else replace(entry, before=earlier)), raw


def _still_owed(ctx: EngineContext, key: str, earlier: JournalEntry) -> JournalEntry:
    """A stored answer whose owed re-ask ``max_reasks`` does not allow now: ``invalid`` with its
    error, left in the journal as it is (a later run allowing re-asks sends it)."""
    verdict = owed_verdict(earlier.answer, earlier.finish_reason, ctx.validator)
    entry = _judged_entry(ctx, key, verdict, spent_before(earlier, earlier.cost_cny or 0.0))
    message = f"{entry.error_message}; its re-ask is still owed (--max-reasks {ctx.max_reasks} sends none now)"
    return replace(entry, final=False, error_message=message, latency_ms=earlier.latency_ms,
                   finish_reason=earlier.finish_reason, request_id=earlier.request_id, answer=earlier.answer)


def _sending(asking: _Asking) -> AbstractContextManager[None]:
    """A paid row's requests take a slot before new rows' first requests."""
    return paid_rows_first() if asking.paid_row else nullcontext()


async def _ask(ctx: EngineContext, key: str, body: dict[str, Any],
               asking: _Asking) -> tuple[JournalEntry, bytes | None]:
    tally = asking.tally
    while True:
        log = AttemptLog()
        admission = admission_for(ctx, asking.current, paid_row=asking.paid_row)
        try:
            try:
                with _sending(asking):
                    answer = await send_with_retry(ctx.client, asking.current, ctx.limiter, ctx.policy, ctx.stop,
                                                   log, admission)
            finally:  # count this send's attempts before any entry below copies the tally
                asking.note_sent(ctx, log)
        except (FatalError, RowError, TransientError, RunStopping, BudgetReached) as exc:
            return _unanswered(ctx, key, asking, log, exc), None
        asking.reask_on_wire = False
        tally.prompt_tokens += answer.prompt_tokens
        tally.completion_tokens += answer.completion_tokens
        if not tally.reasks:  # the request as rendered: the summary checks the estimate against it
            counted = count_prompt_tokens(body["messages"], body.get("tools"))
            tally.counted_prompt = 0 if answer.usage_counted else counted  # no bill beside it: nothing to learn
            ctx.stats.first_answers += 1
            ctx.stats.rule_prompt_tokens += counted
        tally.cost_cny += book_answer(ctx, answer, log, _spent_on(tally, log), admission)
        asking.paid = answer
        verdict = judge(answer.content, answer.finish_reason, ctx.validator)
        if isinstance(verdict, Reask) and tally.reasks < asking.most_reasks:
            _owe_reask(ctx, key, asking)
            asking.current = build_reask(asking.current, answer.content, verdict)
            asking.reask_due = True
            continue
        entry = _judged_entry(ctx, key, verdict, tally)
        entry = replace(entry, latency_ms=answer.latency_ms, finish_reason=answer.finish_reason,
                        request_id=answer.request_id, answer=answer.content)  # the journal need not parse raw again
        if answer.synthetic and ctx.endpoint_id != SYNTHETIC_ENDPOINT:  # never journaled under a real key
            entry = replace(entry, final=False)
        return entry, answer.raw


def _owe_reask(ctx: EngineContext, key: str, asking: _Asking) -> None:
    """Journal the paid answer that needs a re-ask at once, owed that re-ask: if the run stops (or
    is killed) before the row is final, the rerun sends only the re-ask. The row's final verdict
    replaces it; meanwhile the run keeps the key's claim."""
    entry = _owed_entry(ctx, key, asking, code=REASK_PENDING, reason="its re-ask is owed")
    if entry.final:
        keep_in_journal(ctx, entry, None)


def _unanswered(ctx: EngineContext, key: str, asking: _Asking, log: AttemptLog, exc: Exception) -> JournalEntry:
    """The row's request got no answer. A paid row stopped before its re-ask stays owed it (kept)."""
    tally = asking.tally
    if isinstance(exc, FatalError):
        ctx.stop.stop(exc)  # no new attempt starts; the ones on the wire are cancelled
    if isinstance(exc, BudgetReached):
        return _budget_entry(ctx, key, asking, exc)
    if isinstance(exc, FatalError | RunStopping | TransientError) and asking.paid_row:
        reason = f"gave up after {log.attempts} attempts: {exc.message}" if isinstance(exc, TransientError) else exc
        code = REASK_UNANSWERED if asking.reask_on_wire else REASK_PENDING
        return _owed_entry(ctx, key, asking, code=code, reason=f"its re-ask got no answer: {reason}")
    if isinstance(exc, FatalError):
        return _entry(ctx, key, "failed", tally, final=False, code=exc.code, message=exc.message)
    if isinstance(exc, RowError):
        status = "filtered" if exc.filtered else "failed"
        final = exc.judged_content  # only the platform's verdict on this content is kept for good
        return _entry(ctx, key, status, tally, final=final, code=exc.code, message=exc.message)
    if isinstance(exc, TransientError):
        message = f"gave up after {log.attempts} attempts: {exc.message}"
        return _entry(ctx, key, "failed", tally, final=False, code=exc.code, message=message)
    return _entry(ctx, key, "failed", tally, final=False, code="run_aborted", message=f"not answered: {exc}")


def _budget_entry(ctx: EngineContext, key: str, asking: _Asking, exc: BudgetReached) -> JournalEntry:
    """The budget refused a request of this row. Nothing paid yet: ``skipped``, not kept (a later
    run asks). An answer paid (or its pack's share): ``invalid`` with that answer, kept, so a later
    run with more budget sends only the re-ask."""
    if not asking.paid_row:
        return _entry(ctx, key, "skipped", asking.tally, final=False, code="budget_reached",
                      message=f"not sent: {exc}")
    if asking.reask_on_wire:  # its re-ask went out, got no answer, and the budget refused the retry
        return _owed_entry(ctx, key, asking, code=REASK_UNANSWERED, reason=f"its re-ask got no answer, then {exc}")
    return _owed_entry(ctx, key, asking, code="budget_reached", reason=f"its re-ask was not sent: {exc}")


def _owed_entry(ctx: EngineContext, key: str, asking: _Asking, *, code: str, reason: str) -> JournalEntry:
    """``invalid`` with the row's paid answer (none: its pack's share), owed its re-ask; kept unless
    the answer is synthetic and the key a real endpoint's (the message says which)."""
    paid = asking.paid
    keep = not (isinstance(paid, ChatAnswer) and paid.synthetic and ctx.endpoint_id != SYNTHETIC_ENDPOINT)
    kept = "kept in the journal: a rerun sends only the re-ask" if keep else "not kept (a synthetic answer)"
    message = f"{_problem(ctx, paid)}; {reason} ({kept})"
    entry = _entry(ctx, key, "invalid", asking.tally, final=keep, code=code, message=message)
    if paid is None:  # a pack's share paid; no answer of its own
        return entry
    return replace(entry, latency_ms=paid.latency_ms, finish_reason=paid.finish_reason, request_id=paid.request_id,
                   answer=paid.content if isinstance(paid, ChatAnswer) else paid.answer)


def _problem(ctx: EngineContext, paid: ChatAnswer | JournalEntry | None) -> str:
    """What was wrong with the row's last paid answer (its pack's record, when it has none)."""
    if paid is None or (isinstance(paid, JournalEntry) and paid.request_id is None):
        return "its pack gave no usable record for it"
    content = paid.content if isinstance(paid, ChatAnswer) else paid.answer
    verdict = judge(content, paid.finish_reason, ctx.validator)
    return f"its answer failed the schema ({verdict.code})" if isinstance(verdict, Reask) else "its answer"


def book_answer(ctx: EngineContext, answer: ChatAnswer, log: AttemptLog, spent_on: str,
                admission: _BudgetAdmission | None = None) -> float:
    """Price a paid answer, settle the budget's reservation with it (at the budget's prices; the
    budget learns how the platform counted the prompt), count it; return its cost."""
    cost = ctx.cost(answer.prompt_tokens, answer.completion_tokens, answer.cached_tokens)
    ctx.stats.note_cached(answer.cached_tokens, synthetic=answer.synthetic)
    ctx.stats.usage_counted += answer.usage_counted
    budget = ctx.shared.budget
    budget_prompt = answer.prompt_tokens
    if admission is not None and answer.usage_counted:  # no bill to learn from: our count at the budget's scale
        budget_prompt = math.ceil(budget.prompt_tokens(admission.counted_prompt))
    budget.settle(log.reserved, ctx.budget_cost(budget_prompt, answer.completion_tokens, answer.cached_tokens))
    if admission is not None:
        if answer.usage_counted:
            budget.learn_nothing(admission.counted_prompt)
        else:
            budget.learn(answer.prompt_tokens, admission.counted_prompt)
    ctx.stats.note_answer(answer.latency_ms, answer.prompt_tokens, answer.completion_tokens, cost,
                          spent_on=spent_on, cached_cny=ctx.cost(answer.cached_tokens, 0, answer.cached_tokens))
    return cost


def _spent_on(tally: RowSpend, log: AttemptLog) -> str:
    """What an answer's cost is booked to: a re-ask, an answer that needed retries, or a first attempt."""
    if tally.reasks:
        return "reasks"
    return "retries" if log.attempts > 1 else "first_attempts"


def _judged_entry(ctx: EngineContext, key: str, verdict: Valid | Reask | Filtered, tally: RowSpend) -> JournalEntry:
    if isinstance(verdict, Valid):
        data = json_text_for(verdict.data, ctx.answer_dtype) if ctx.free_form else verdict.data
        return _entry(ctx, key, "ok", tally, data_json=orjson.dumps(data).decode())
    if isinstance(verdict, Filtered):
        return _entry(ctx, key, "filtered", tally, code=verdict.code, message=verdict.message)
    message = f"{verdict.code} after {tally.reasks} re-asks: {'; '.join(verdict.errors)[:500]}"
    return _entry(ctx, key, "invalid", tally, code=verdict.code, message=message)


def _entry(ctx: EngineContext, key: str, status: str, tally: RowSpend, *, final: bool = True,
           data_json: str | None = None, code: str | None = None, message: str | None = None) -> JournalEntry:
    return JournalEntry(
        key=key, status=status, final=final, data_json=data_json, error_code=code, error_message=message,
        attempts=tally.attempts, reasks=tally.reasks, prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens, latency_ms=None, finish_reason=None,
        model=ctx.options.model, request_id=None, task=ctx.task.name, schema_id=ctx.task.schema_id,
        cost_cny=tally.cost_cny, counted_prompt=tally.counted_prompt,
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
        entry = fresh.get(plan.key) or known.get(plan.key)
        if entry is None:  # the run stopped while this row waited for another run's answer
            metas.append(_local_meta("failed", "run_aborted", "not sent: the run stopped first"))
            continue
        from_journal = plan.key not in fresh or plan.key in paid
        paid.add(plan.key)
        earlier = None if from_journal else entry.before
        metas.append(meta_from_entry(ctx, entry, from_journal=from_journal or _same(entry, earlier), earlier=earlier))
    return metas


def _same(entry: JournalEntry, earlier: JournalEntry | None) -> bool:
    """This run added no attempt to a row an earlier run paid for (its re-ask did not fit again)."""
    return earlier is not None and entry.attempts == earlier.attempts


def meta_from_entry(ctx: EngineContext, entry: JournalEntry, *, from_journal: bool,
                    earlier: JournalEntry | None = None) -> RowMeta:
    """The output meta of a row answered by ``entry``: what this run spent on it (nothing when the
    answer was reused; less ``earlier``, what an earlier run paid for the row before its re-ask
    was due) and what the answer cost when it was paid (``paid_*``)."""
    paid_cost = _paid_cost(ctx, entry)
    spent = RowSpend() if from_journal else RowSpend.of(entry, paid_cost)
    if earlier is not None and not from_journal:
        spent = spent.less(spent_before(earlier, _paid_cost(ctx, earlier)))
    return RowMeta(
        status=entry.status, error_code=entry.error_code, error_message=entry.error_message,
        attempts=spent.attempts, reasks=spent.reasks,
        prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens, cost_cny=spent.cost_cny,
        latency_ms=entry.latency_ms, finish_reason=entry.finish_reason, model=entry.model,
        request_id=entry.request_id, key=entry.key, from_journal=from_journal,
        packed=is_packed_request_id(entry.request_id),
        data_json=entry.data_json if entry.status == "ok" else None,
        paid_prompt_tokens=entry.prompt_tokens, paid_completion_tokens=entry.completion_tokens,
        paid_cost_cny=paid_cost,
    )


def _paid_cost(ctx: EngineContext, entry: JournalEntry) -> float:
    return entry.cost_cny if entry.cost_cny is not None else ctx.cost(entry.prompt_tokens, entry.completion_tokens)


def rows_of(frame: pl.DataFrame, task: TaskSpec) -> list[dict[str, Any]]:
    """The values a prompt needs, keyed by template name (only those columns, to keep it cheap)."""
    return prompt_rows(frame, task)
