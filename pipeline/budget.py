"""The run's money: what answers cost (settled) and what requests on the wire may still cost.

A request is sent only if the worst it can cost (its prompt tokens, with a margin for the
tokenizer, plus ``max_tokens`` of answer) fits under the budget next to what is already spent and
what other requests on the wire have reserved. The reservation is settled with the answer's real
cost, or released when the attempt fails. A request that does not fit waits while other
reservations are outstanding (they usually settle far below their worst case), and is refused
once it cannot fit even then. So the run never spends past its budget, whatever the concurrency,
as long as the platform bills no more prompt tokens than reserved.

The prompt margin learns: it starts at :data:`PROMPT_MARGIN` and becomes the largest ratio of
billed to counted prompt tokens any answer of the run showed (:meth:`Budget.learn`). Until the first
answer has taught it, one request is on the wire at a time (the others wait for that lesson), so a
platform whose tokenizer counts far more than the rule of thumb can overshoot only with that first
request; the window opens at the first answer.

Rows already paid for go first: a re-ask (or the request alone after a pack) of a row that has an
answer waiting to be corrected is admitted before any new row's first request that waits with it,
so a tight budget finishes rows it has paid for rather than starting new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

#: The prompt-token count of a request is estimated by the rule of thumb (pipeline.tokens); the
#: budget reserves at least this much more, in case the platform's tokenizer counts higher.
PROMPT_MARGIN = 1.25


class BudgetReached(Exception):
    """This request does not fit under the run's budget: it is not sent."""


@dataclass
class Budget:
    """Shared by every shard of one run; ``limit_cny`` None means no budget (only counting)."""

    spent_cny: float = 0.0
    reserved_cny: float = 0.0
    prompt_scale: float = PROMPT_MARGIN  # reservations count prompt tokens × this
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, repr=False)
    _paid_waiting: int = field(default=0, repr=False)  # reservations of paid rows not yet decided
    _learnt: bool = field(default=False, repr=False)  # an answer has shown what the platform bills

    async def reserve(self, worst: float | Callable[[], float], limit_cny: float | None, *,
                      paid_row: bool = False) -> float:
        """Reserve the worst case and return it (0 without a limit); raise :class:`BudgetReached`.

        ``worst``: the CNY, or how to price it now (priced again after every wait, so a request that
        waited for the first answer is reserved at what that answer taught). ``paid_row``: the row
        already has a paid answer (this is its re-ask); it goes before requests of rows without one
        that wait at the same time."""
        if limit_cny is None:
            return 0.0
        price = worst if callable(worst) else (lambda: worst)
        self._paid_waiting += paid_row
        try:
            while self._must_wait(worst_cny := price(), limit_cny, paid_row):
                if self.spent_cny + worst_cny > limit_cny or (self.reserved_cny <= 0 and (
                        paid_row or not self._paid_waiting)):
                    raise BudgetReached(f"the run's budget of {limit_cny} CNY was reached")
                await self._wait()
        finally:
            if paid_row:
                self._paid_waiting -= 1
                self._wake()  # rows without a paid answer may have waited behind this one
        self.reserved_cny += worst_cny
        return worst_cny

    def _must_wait(self, worst_cny: float, limit_cny: float, paid_row: bool) -> bool:
        over = self.spent_cny + self.reserved_cny + worst_cny > limit_cny
        untaught = not self._learnt and self.reserved_cny > 0  # one request on the wire until an answer
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

    def release(self, reserved_cny: float) -> None:
        """An attempt that was reserved for ended without an answer."""
        self.settle(reserved_cny, 0.0)

    def settle(self, reserved_cny: float, actual_cny: float) -> None:
        """Replace a reservation by what the answer really cost."""
        self.reserved_cny = max(0.0, self.reserved_cny - reserved_cny)
        self.spent_cny += actual_cny
        self._wake()

    def learn(self, billed_prompt_tokens: int, counted_prompt_tokens: int) -> None:
        """An answer's prompt was billed at ``billed`` tokens where the rule counted ``counted``:
        later reservations count prompts at the largest such ratio (never below the margin)."""
        if counted_prompt_tokens > 0:
            self.prompt_scale = max(self.prompt_scale, billed_prompt_tokens / counted_prompt_tokens)
            self._learnt = True
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
