"""Concurrency window for one process: never more than ``cap`` requests in flight, adaptive.

AIMD, with the decrease sized to the overload: the share of rate-limit answers (1302/1303) among
recent answers is tracked (an exponential average over about two caps' worth of answers). When it
reaches ``overload_share`` the window halves (at most once per ``cooldown_s``, so a burst of
rejections from one overload counts once); below that, each rejection takes one slot off the
window. Each success grows the window by ``1/window`` (about one slot per window of successes)
back up to the cap. So a few requests over a real cap are trimmed a slot at a time, a large
overload halves the window at once, and an occasional 1302 while we stay under the cap — the
platform has them — costs one slot that the next window of successes gives back (halving on each
would hold the window far under the cap under a few % of random rejections: docs/decisions.md D26).
Waiters are served
first in, first out, except that a request of a row already paid for (its re-ask, or its request
alone after a pack: sent inside :func:`paid_rows_first`) goes before every new row's first request
waiting with it, so a row's paid answer waits as little as possible for its correction.
Under Prefect, ``cap`` is the number of slots the shard task leased from the account-wide global
concurrency limit, so the account's cap is never exceeded across processes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

_PAID_ROW: ContextVar[bool] = ContextVar("glm_extract_paid_row", default=False)


@contextmanager
def paid_rows_first() -> Iterator[None]:
    """Slots asked for in this block (by this task) go before those of new rows' first requests."""
    token = _PAID_ROW.set(True)
    try:
        yield
    finally:
        _PAID_ROW.reset(token)


class AdaptiveLimiter:
    """An asyncio semaphore whose size moves between ``min_limit`` and ``cap``."""

    def __init__(
        self,
        cap: int,
        *,
        min_limit: int = 1,
        decrease: float = 0.5,
        cooldown_s: float = 1.0,
        overload_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self.min_limit = max(1, min(min_limit, cap))
        self.window = float(cap)
        self.in_flight = 0
        self.max_in_flight = 0
        self.rate_limited = 0
        self._decrease = decrease
        self._overload_share = overload_share
        self._memory = 1.0 / (2 * cap)  # weight of one answer in the rate-limited share
        self.rate_limited_share = 0.0
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_decrease = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._paid_waiters: deque[asyncio.Future[None]] = deque()  # served before ``_waiters``
        self._watchers: list[Callable[[], None]] = []

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        return max(self.min_limit, math.floor(self.window))

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (ready to go as soon as one frees)."""
        return len(self._waiters) + len(self._paid_waiters)

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a request asks for a slot or a queued one gets it."""
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[], None]) -> None:
        self._watchers.remove(callback)

    async def acquire(self) -> None:
        """Wait for a slot (FIFO; a paid row's request, inside :func:`paid_rows_first`, before new rows')."""
        for callback in self._watchers:
            callback()
        if not self.waiting and self.in_flight < self.limit:
            self._take()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._paid_waiters if _PAID_ROW.get() else self._waiters
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over as we were cancelled: give it back
            elif future in queue:  # `_wake` may already have dropped the cancelled future
                queue.remove(future)
            raise

    def release(self) -> None:
        """Return a slot and wake as many waiters as the window allows."""
        self.in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def on_success(self) -> None:
        """Additive increase."""
        self.rate_limited_share *= 1.0 - self._memory
        if self.window < self.cap:
            self.window = min(float(self.cap), self.window + 1.0 / self.window)
            self._wake()

    def on_rate_limited(self) -> None:
        """Multiplicative decrease on an overload (once per cooldown), else one slot off."""
        self.rate_limited += 1
        self.rate_limited_share += self._memory * (1.0 - self.rate_limited_share)
        now = self._clock()
        if self.rate_limited_share >= self._overload_share and now - self._last_decrease >= self._cooldown_s:
            self._last_decrease = now
            self.window = max(float(self.min_limit), self.window * self._decrease)
        else:
            self.window = max(float(self.min_limit), self.window - 1.0)

    def _take(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _wake(self) -> None:
        woken = False
        while self.waiting and self.in_flight < self.limit:
            future = (self._paid_waiters or self._waiters).popleft()
            woken = True
            if not future.done():
                self._take()
                future.set_result(None)
        if woken:
            for callback in self._watchers:
                callback()
