"""Answer a pack of rows with one request; re-ask alone each row whose record is missing or invalid.

The engine (:func:`pipeline.engine.process_shard`) hands over rows it has claimed and that no other
shard is sending; every row still ends in its own journal entry under its own unpacked request key
(so a resume, or a later unpacked run, reuses it whatever the packing). What the packed request
cost is shared among its rows (:func:`pipeline.packing.share_usage`); a row asked again alone adds
that request's cost to its share. Layout and rules: docs/schema_authoring.md, "Packing".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from pipeline.budget import BudgetReached
from pipeline.engine import (
    EngineContext,
    RowSpend,
    _entry,
    _judged_entry,
    admission_for,
    answer_request,
    book_answer,
)
from pipeline.glm.errors import FatalError, RowError, TransientError
from pipeline.glm.retry import AttemptLog, RunStopping, send_with_retry
from pipeline.journal import JournalEntry
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


async def answer_pack(ctx: EngineContext, pack: Sequence[PackRow]) -> list[tuple[JournalEntry, bytes | None]]:
    """One entry per row of ``pack``, in order (``bytes``: the raw answer to journal, None for a
    record of a packed answer). Never raises for a row-level problem; a fatal error stops the run
    as :func:`pipeline.engine.answer_request` does."""
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
        return _all(ctx, pack, tries, "failed", exc.code, exc.message)
    except (RowError, BudgetReached) as exc:
        # the platform refused or cut the pack (which row it objected to only a row alone tells: a re-ask),
        # or the pack's worst case (every row's full answer at once) did not fit the budget where rows
        # alone may (then a row's request alone is its first)
        asked = await _ask_alone(ctx, pack, after_pack=isinstance(exc, RowError))
        return [(_plus_share(ctx, entry, Share(0, 0, 0), n), raw) for (entry, raw), n in zip(asked, tries, strict=True)]
    except TransientError as exc:
        return _all(ctx, pack, tries, "failed", exc.code, f"gave up after {log.attempts} attempts: {exc.message}")
    except RunStopping as exc:
        return _all(ctx, pack, tries, "failed", "run_aborted", f"not answered: {exc}")
    ctx.stats.first_answers += len(pack)  # one answer for each row: the estimate check counts rows
    ctx.stats.rule_prompt_tokens += count_prompt_tokens(body["messages"])
    book_answer(ctx, answer, log, "retries" if log.attempts > 1 else "first_attempts", admission)
    verdicts = split_answer(answer.content, answer.finish_reason, len(pack), ctx.validator)
    shares = share_usage(answer.prompt_tokens, answer.completion_tokens, answer.cached_tokens,
                         packed_prompt_weights(ctx.task, rows), record_weights(verdicts))
    keep = not answer.synthetic or ctx.endpoint_id == SYNTHETIC_ENDPOINT  # never journaled under a real key
    results: list[tuple[JournalEntry, bytes | None] | None] = [None] * len(pack)
    alone: list[int] = []
    for position, (verdict, share) in enumerate(zip(verdicts, shares, strict=True)):
        if not isinstance(verdict, Valid):
            alone.append(position)
            continue
        tally = _share_tally(ctx, share, tries[position])
        entry = replace(_judged_entry(ctx, pack[position].key, verdict, tally), final=keep,
                        latency_ms=answer.latency_ms, finish_reason=answer.finish_reason,
                        request_id=f"{answer.request_id}{PACKED_ID_MARK}{label(position)}")
        results[position] = (entry, None)
    asked = await _ask_alone(ctx, [pack[i] for i in alone], after_pack=True)
    for position, (alone_entry, raw) in zip(alone, asked, strict=True):
        entry = _plus_share(ctx, alone_entry, shares[position], tries[position])
        results[position] = (entry if keep else replace(entry, final=False), raw)
    return [result for result in results if result is not None]


async def _ask_alone(ctx: EngineContext, rows: Sequence[PackRow], *,
                     after_pack: bool) -> list[tuple[JournalEntry, bytes | None]]:
    """Each row as its own request, in order (``after_pack``: a re-ask, the pack having been sent);
    if one fails unexpectedly the others are cancelled (a TaskGroup), not left paying for answers
    nobody would journal."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(answer_request(ctx, row.key, row.body, after_pack=after_pack)) for row in rows]
    return [task.result() for task in tasks]


def _share_tally(ctx: EngineContext, share: Share, attempts: int) -> RowSpend:
    return RowSpend(attempts=attempts, prompt_tokens=share.prompt_tokens, completion_tokens=share.completion_tokens,
                  cost_cny=ctx.cost(share.prompt_tokens, share.completion_tokens, share.cached_tokens))


def _plus_share(ctx: EngineContext, entry: JournalEntry, share: Share, attempts: int) -> JournalEntry:
    """A row asked again alone also carries its share of the pack it was first sent in."""
    own = entry.cost_cny or 0.0
    return replace(entry, attempts=entry.attempts + attempts,
                   prompt_tokens=entry.prompt_tokens + share.prompt_tokens,
                   completion_tokens=entry.completion_tokens + share.completion_tokens,
                   cost_cny=own + ctx.cost(share.prompt_tokens, share.completion_tokens, share.cached_tokens))


def _all(ctx: EngineContext, pack: Sequence[PackRow], tries: Sequence[int], status: str, code: str,
         message: str) -> list[tuple[JournalEntry, bytes | None]]:
    """The same not-final outcome for every row of a pack that got no answer (nothing to share)."""
    return [(_entry(ctx, m.key, status, RowSpend(attempts=n), final=False, code=code, message=message), None)
            for m, n in zip(pack, tries, strict=True)]
