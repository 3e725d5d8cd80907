"""Answer a pack of rows with one request; re-ask alone each row whose record is missing or invalid.

The engine (:func:`pipeline.engine.process_shard`) hands over rows it has claimed and that no other
shard is sending; every row still ends in its own journal entry under its own unpacked request key
(so a resume, or a later unpacked run, reuses it whatever the packing). What the packed request
cost is shared among its rows (:func:`pipeline.packing.share_usage`); a row asked again alone adds
that request's cost to its share. Each row is handed over (and journaled) as soon as it has its
outcome, not when the whole pack has. Layout and rules: docs/schema_authoring.md, "Packing".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from pipeline.budget import BudgetReached
from pipeline.engine import (
    EngineContext,
    RowSpend,
    Settle,
    _entry,
    _judged_entry,
    admission_for,
    answer_request,
    book_answer,
    keep_in_journal,
)
from pipeline.glm.errors import FatalError, RowError, TransientError
from pipeline.glm.retry import AttemptLog, RunStopping, send_with_retry
from pipeline.keys import SYNTHETIC_ENDPOINT
from pipeline.packing import (
    PACKED_ID_MARK,
    PackRow,
    Share,
    label,
    packed_prompt_weights,
    packed_system_message,
    record_weights,
    render_packed_request,
    share_usage,
    split_answer,
    split_tokens,
)
from pipeline.tokens import count_prompt_tokens
from pipeline.validate import Valid


async def answer_pack(ctx: EngineContext, pack: Sequence[PackRow], settle: Settle) -> None:
    """Hand each row of ``pack`` to ``settle`` as soon as it has its outcome (``bytes``: the raw
    answer to journal, None for a record of a packed answer): the pack's usable records once the
    pack is judged, each row asked again alone once its own requests end. A row asked alone is first
    journaled owed that request (its share of the pack paid), so a run stopped meanwhile does not
    pay for the pack again. Never raises for a row-level problem; a fatal error stops the run as
    :func:`pipeline.engine.answer_request` does."""
    rows = [member.row for member in pack]
    body = render_packed_request(ctx.task, rows, ctx.options, packed_system_message(ctx.task))
    log = AttemptLog()
    admission = admission_for(ctx, body)
    try:
        try:
            answer = await send_with_retry(ctx.client, body, ctx.limiter, ctx.policy, ctx.stop, log, admission)
        finally:
            ctx.stats.note_attempts(log)
            tries = split_tokens(log.attempts, [1] * len(pack))  # each attempt booked on one row
    except FatalError as exc:
        ctx.stop.stop(exc)
        return _all(ctx, pack, tries, settle, "failed", exc.code, exc.message)
    except (RowError, BudgetReached) as exc:
        # the platform refused or cut the pack (which row it objected to only a row alone tells: a re-ask),
        # or the pack's worst case (every row's full answer at once) did not fit the budget where rows
        # alone may (then a row's request alone is its first)
        spends = [RowSpend(attempts=n) for n in tries]
        return await _ask_alone(ctx, pack, spends, settle, after_pack=isinstance(exc, RowError), keep=True)
    except TransientError as exc:
        message = f"gave up after {log.attempts} attempts: {exc.message}"
        return _all(ctx, pack, tries, settle, "failed", exc.code, message)
    except RunStopping as exc:
        return _all(ctx, pack, tries, settle, "failed", "run_aborted", f"not answered: {exc}")
    ctx.stats.first_answers += len(pack)  # one answer for each row: the estimate check counts rows
    ctx.stats.rule_prompt_tokens += count_prompt_tokens(body["messages"])
    book_answer(ctx, answer, log, "retries" if log.attempts > 1 else "first_attempts", admission)
    verdicts = split_answer(answer.content, answer.finish_reason, len(pack), ctx.validator)
    shares = share_usage(answer.prompt_tokens, answer.completion_tokens, answer.cached_tokens,
                         packed_prompt_weights(ctx.task, rows), record_weights(verdicts))
    keep = not answer.synthetic or ctx.endpoint_id == SYNTHETIC_ENDPOINT  # never journaled under a real key
    alone: list[int] = []
    for position, (verdict, share) in enumerate(zip(verdicts, shares, strict=True)):
        if not isinstance(verdict, Valid):
            alone.append(position)
            continue
        tally = _share_tally(ctx, share, tries[position])
        entry = replace(_judged_entry(ctx, pack[position].key, verdict, tally), final=keep,
                        latency_ms=answer.latency_ms, finish_reason=answer.finish_reason,
                        request_id=f"{answer.request_id}{PACKED_ID_MARK}{label(position)}")
        settle(pack[position], entry, None)
    spends = [_share_tally(ctx, shares[i], tries[i]) for i in alone]
    if keep:
        for i, spent in zip(alone, spends, strict=True):
            _owe_alone(ctx, pack[i], spent)
    await _ask_alone(ctx, [pack[i] for i in alone], spends, settle, after_pack=True, keep=keep)


def _owe_alone(ctx: EngineContext, row: PackRow, share: RowSpend) -> None:
    """Journal a row the pack gave nothing usable for, its share paid, owed its request alone (D37's
    pack-share form: no request id); its own outcome replaces it. ``share`` is copied: the row's
    requests alone add to it."""
    message = ("its pack gave no usable record for it; its request alone is owed "
               "(kept in the journal: a rerun sends only that request)")
    keep_in_journal(ctx, _entry(ctx, row.key, "invalid", replace(share), code="reask_pending", message=message), None)


async def _ask_alone(ctx: EngineContext, rows: Sequence[PackRow], spends: Sequence[RowSpend], settle: Settle, *,
                     after_pack: bool, keep: bool) -> None:
    """Each row as its own request (``after_pack``: a re-ask, the pack having been sent; ``spends``:
    what each row's part of the pack took), settled as soon as it ends (``keep``: else not
    journaled); if one fails unexpectedly the others are cancelled (a TaskGroup), not left paying
    for answers nobody would journal."""
    async def one(row: PackRow, spent: RowSpend) -> None:
        entry, raw = await answer_request(ctx, row.key, row.body, after_pack=after_pack, spent=spent)
        settle(row, entry if keep else replace(entry, final=False), raw)

    async with asyncio.TaskGroup() as group:
        for row, spent in zip(rows, spends, strict=True):
            group.create_task(one(row, spent))


def _share_tally(ctx: EngineContext, share: Share, attempts: int) -> RowSpend:
    return RowSpend(attempts=attempts, prompt_tokens=share.prompt_tokens, completion_tokens=share.completion_tokens,
                    cost_cny=ctx.cost(share.prompt_tokens, share.completion_tokens, share.cached_tokens))


def _all(ctx: EngineContext, pack: Sequence[PackRow], tries: Sequence[int], settle: Settle, status: str, code: str,
         message: str) -> None:
    """The same not-final outcome for every row of a pack that got no answer (nothing to share)."""
    for member, n in zip(pack, tries, strict=True):
        settle(member, _entry(ctx, member.key, status, RowSpend(attempts=n), final=False, code=code, message=message),
               None)
