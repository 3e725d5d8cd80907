"""The run's money: what answers cost (settled) and what requests on the wire may still cost.

A request is sent only if the worst it can cost (its prompt tokens, with a margin for the
tokenizer, plus ``max_tokens`` of answer) fits under the budget next to what is already spent and
what other requests on the wire have reserved. The reservation is settled with the answer's real
cost, or released when the attempt fails. A request that does not fit waits while other
reservations are outstanding (they usually settle far below their worst case), and is refused
once it cannot fit even then. So the run never spends past its budget, whatever the concurrency,
as long as the platform bills no more prompt tokens than reserved.

The prompt margin learns, for each kind of text apart (:class:`PromptCount`): a platform's tokenizer
may bill Thai at three times our count and English at our count. A request's prompt is its ASCII
part and, when characters of other scripts make up at least :data:`MINOR_SHARE` of it, its script
part (named by the script most of those characters are in). Each part is counted × what answers
showed for its kind (:meth:`Budget.learn`, never below :data:`PROMPT_MARGIN`): the ASCII part the
largest billed ÷ counted ratio of an ASCII request's answer, the script part the largest ratio of
what an answer of that script was billed beyond its ASCII part (at the lowest ratio ASCII answers
showed; at none before one has) to its script part. A tokenizer's bill adds up over the pieces of
the text, so a lesson holds for requests with more or less of the script than the one that taught
it. Until a kind has been taught, one request of it is on the wire at a time (the others of that
kind wait for the lesson; requests of kinds already taught go on), so a platform that bills a kind
of text far above the rule of thumb can overshoot only with the first request of that kind. A
script part under the share counts as ASCII text (the margin covers it: 7/8 of a prompt at our count
and 1/8 at 3× is 1.25×), and its answers teach the ASCII ratio.

Rows already paid for go first: a re-ask (or the request alone after a pack) of a row that has an
answer waiting to be corrected is admitted before any new row's first request that waits with it,
so a tight budget finishes rows it has paid for rather than starting new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from pipeline.tokens import count_prompt_tokens, message_text, tokens_by_script

#: The prompt-token count of a request is estimated by the rule of thumb (pipeline.tokens); the
#: budget reserves at least this much more, in case the platform's tokenizer counts higher.
PROMPT_MARGIN = 1.25
#: Characters of other scripts than ASCII make a request's script part from this share of its
#: prompt tokens on; under it they count as ASCII text (7/8 at 1× and 1/8 at 3× is the margin).
MINOR_SHARE = 1 / 8
ASCII = "ascii"  # the kind of text of a request without a script part


@lru_cache(maxsize=512)  # a re-ask repeats the messages of the request before it
def script_parts(text: str) -> tuple[tuple[str, float], ...]:
    """The tokens the rule counts for a text's non-ASCII characters, by script
    (:func:`pipeline.tokens.tokens_by_script`; none for ASCII text)."""
    return () if text.isascii() else tuple(tokens_by_script(text.encode("utf-8", "replace")).items())


@dataclass(frozen=True)
class PromptCount:
    """A request's prompt tokens by the rule of thumb, and which of them are of another script than
    ASCII: ``script_tokens`` of the script ``kind`` (0, and ``kind`` ASCII, when they are fewer than
    :data:`MINOR_SHARE` of the prompt)."""

    tokens: int
    script_tokens: float = 0.0
    kind: str = ASCII

    @classmethod
    def of(cls, messages: Iterable[Mapping[str, Any]], tools: Any = None) -> PromptCount:
        messages = list(messages)
        texts = [message_text(m) for m in messages]
        if tools:
            texts.append(orjson.dumps(tools).decode())
        return cls.of_parts(count_prompt_tokens(messages, tools), [part for t in texts for part in script_parts(t)])

    @classmethod
    def of_parts(cls, tokens: int, parts: Iterable[tuple[str, float]]) -> PromptCount:
        """``tokens`` of which ``parts`` are by script: the script part is them all, named by the
        script of most of them."""
        by_script: dict[str, float] = {}
        for name, count in parts:
            by_script[name] = by_script.get(name, 0.0) + count
        script = min(sum(by_script.values()), float(tokens))
        if not by_script or script < MINOR_SHARE * tokens:
            return cls(tokens)
        return cls(tokens, script, max(by_script, key=lambda name: by_script[name]))

    @property
    def ascii_tokens(self) -> float:
        return self.tokens - self.script_tokens


class BudgetReached(Exception):
    """This request does not fit under the run's budget: it is not sent."""


@dataclass
class Budget:
    """Shared by every shard of one run; ``limit_cny`` None means no budget (only counting)."""

    spent_cny: float = 0.0
    reserved_cny: float = 0.0
    #: per kind of text, the largest ratio of billed to counted prompt tokens its answers showed (of
    #: a script: of its part, its ASCII part counted at the lowest ASCII ratio seen)
    ratios: dict[str, float] = field(default_factory=dict)
    _ascii_low: float | None = field(default=None, repr=False)  # the lowest ratio an ASCII answer showed
    _teaching: set[str] = field(default_factory=set, repr=False)  # kinds not taught yet with a request on the wire
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, repr=False)
    _paid_waiting: int = field(default=0, repr=False)  # reservations of paid rows not yet decided

    def scale(self, kind: str) -> float:
        """What a prompt token of this kind counts as in a reservation."""
        return max(PROMPT_MARGIN, self.ratios.get(kind, 0.0))

    def prompt_tokens(self, counted: PromptCount) -> float:
        """The prompt tokens a reservation counts for a prompt: each part at its kind's scale."""
        return counted.ascii_tokens * self.scale(ASCII) + counted.script_tokens * self.scale(counted.kind)

    async def reserve(self, worst: float | Callable[[], float], limit_cny: float | None, *,
                      paid_row: bool = False, kind: str = ASCII) -> float:
        """Reserve the worst case and return it (0 without a limit); raise :class:`BudgetReached`.

        ``worst``: the CNY, or how to price it now (priced again after every wait, so a request that
        waited for the first answer of its kind is reserved at what that answer taught). ``paid_row``:
        the row already has a paid answer (this is its re-ask); it goes before requests of rows
        without one that wait at the same time. ``kind``: of the request's text (:class:`PromptCount`)."""
        if limit_cny is None:
            return 0.0
        price = worst if callable(worst) else (lambda: worst)
        self._paid_waiting += paid_row
        try:
            while self._must_wait(worst_cny := price(), limit_cny, paid_row, kind):
                if self.spent_cny + worst_cny > limit_cny or (self.reserved_cny <= 0 and (
                        paid_row or not self._paid_waiting)):
                    raise BudgetReached(f"the run's budget of {limit_cny} CNY was reached")
                await self._wait()
        finally:
            if paid_row:
                self._paid_waiting -= 1
                self._wake()  # rows without a paid answer may have waited behind this one
        self.reserved_cny += worst_cny
        if kind not in self.ratios:
            self._teaching.add(kind)
        return worst_cny

    def _must_wait(self, worst_cny: float, limit_cny: float, paid_row: bool, kind: str) -> bool:
        over = self.spent_cny + self.reserved_cny + worst_cny > limit_cny
        untaught = kind in self._teaching and self.reserved_cny > 0  # one of a kind on the wire until it is taught
        return over or untaught or (not paid_row and self._paid_waiting > 0)

    async def _wait(self) -> None:
        """Until some reservation settles or is released, or a paid row's reservation is decided."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, reserved_cny: float, kind: str = ASCII) -> None:
        """An attempt that was reserved for ended without an answer (a request of ``kind``)."""
        self._teaching.discard(kind)  # the next request of an untaught kind may go
        self.settle(reserved_cny, 0.0)

    def settle(self, reserved_cny: float, actual_cny: float) -> None:
        """Replace a reservation by what the answer really cost."""
        self.reserved_cny = max(0.0, self.reserved_cny - reserved_cny)
        self.spent_cny += actual_cny
        self._wake()

    def learn(self, billed_prompt_tokens: int, counted: PromptCount) -> None:
        """An answer's prompt was billed at ``billed`` tokens where the rule counted ``counted``:
        later reservations count prompts of its kind at the largest such ratio (never below the margin)."""
        kind = counted.kind
        if kind == ASCII:
            ratio = billed_prompt_tokens / max(1, counted.tokens)
            self._ascii_low = ratio if self._ascii_low is None else min(self._ascii_low, ratio)
        else:  # its ASCII part at the lowest ratio seen (at none before one): the rest is the script's
            ratio = (billed_prompt_tokens - (self._ascii_low or 0.0) * counted.ascii_tokens) / counted.script_tokens
        self.ratios[kind] = max(self.ratios.get(kind, 0.0), ratio)
        self._teaching.discard(kind)
        self._wake()

    def learn_nothing(self, counted: PromptCount) -> None:
        """An answer of ``counted``'s kind came without a bill (no usable usage): there is nothing to
        learn, now or later, so its kind counts as taught at the margin and its requests stop going one
        at a time (they were serialised for good behind a lesson that could never come)."""
        self.ratios.setdefault(counted.kind, 0.0)
        self._teaching.discard(counted.kind)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
