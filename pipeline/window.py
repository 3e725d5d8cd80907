"""When the next shard may start: whenever the run's queued requests would not fill the slots.

A shard is done only when its last row is, and a row can sit in back-off or hang on the wire long
after the others are answered. A fixed number of shards in flight lets a few such rows idle the
slots (the next shard waits for them). Instead the next shard starts as soon as fewer requests
are queued for a slot than the window holds, so there is always work for a slot that frees; the
number of shards in flight is bounded (``max_shards``), and with it the rows held in memory. After
a shard starts, the next one waits for a sign that requests are moving (one asked for a slot or
got one, or a shard ended): a shard still rendering has queued nothing yet, and counting its empty
queue as hunger would start every shard at once.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from pipeline.limiter import AdaptiveLimiter

MAX_SHARDS_IN_FLIGHT = 8  # rows in memory: at most this many shards' worth


class ShardWindow:
    """Use as ``async with``; ``await admit()`` before a shard starts, ``done()`` once its rows settle."""

    def __init__(self, limiter: AdaptiveLimiter, max_shards: int = MAX_SHARDS_IN_FLIGHT) -> None:
        self._limiter = limiter
        self._max = max(1, max_shards)
        self._changed = asyncio.Event()
        self.running = 0
        self._moved = True  # requests moved since the last shard started

    def _note_movement(self) -> None:
        self._moved = True
        self._changed.set()

    async def __aenter__(self) -> ShardWindow:
        self._limiter.watch(self._note_movement)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._limiter.unwatch(self._note_movement)

    def hungry(self) -> bool:
        """Room for another shard, and too little queued to keep every slot busy."""
        if self.running == 0:
            return True
        return self._moved and self.running < self._max and self._limiter.waiting < self._limiter.limit

    async def admit(self) -> None:
        """Wait until the next shard should start, and count it as running."""
        while not self.hungry():
            self._changed.clear()
            await self._changed.wait()
        self.running += 1
        self._moved = False

    def done(self) -> None:
        """A shard's requests are settled (its part may still be being written)."""
        self.running -= 1
        self._note_movement()
