"""The run's money: what answers cost (settled) and what requests on the wire may still cost.

A request is sent only if the worst it can cost (its prompt tokens, with a margin for the
tokenizer, plus ``max_tokens`` of answer) fits under the budget next to what is already spent and
what other requests on the wire have reserved. The reservation is settled with the answer's real
cost, or released when the attempt fails. A request that does not fit waits while other
reservations are outstanding (they usually settle far below their worst case), and is refused
once it cannot fit even then. So the run never spends past its budget, whatever the concurrency.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


class BudgetReached(Exception):
    """This request does not fit under the run's budget: it is not sent."""


@dataclass
class Budget:
    """Shared by every shard of one run; ``limit_cny`` None means no budget (only counting)."""

    spent_cny: float = 0.0
    reserved_cny: float = 0.0
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

    async def reserve(self, worst_cny: float, limit_cny: float | None) -> float:
        """Reserve ``worst_cny`` and return it (0 without a limit); raise :class:`BudgetReached`."""
        if limit_cny is None:
            return 0.0
        while self.spent_cny + self.reserved_cny + worst_cny > limit_cny:
            if self.reserved_cny <= 0 or self.spent_cny + worst_cny > limit_cny:
                raise BudgetReached(f"the run's budget of {limit_cny} CNY was reached")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # until some reservation settles or is released
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.reserved_cny += worst_cny
        return worst_cny

    def release(self, reserved_cny: float) -> None:
        """An attempt that was reserved for ended without an answer."""
        self.settle(reserved_cny, 0.0)

    def settle(self, reserved_cny: float, actual_cny: float) -> None:
        """Replace a reservation by what the answer really cost."""
        self.reserved_cny = max(0.0, self.reserved_cny - reserved_cny)
        self.spent_cny += actual_cny
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
