"""The account-wide concurrency cap as a Prefect global concurrency limit (GCL), leased in bulk.

GLM caps requests in flight per account and model. Every flow run on the account shares one GCL
named ``glm:<model>``; a shard task leases ``k`` slots once (``occupy=k``) and gates its own
requests with a local :class:`~pipeline.limiter.AdaptiveLimiter` of size ``k``. A lease per
request would cost ~100 ms and 3 API calls each (docs/decisions.md D3).

A lease lasts one shard, so runs take turns at shard boundaries. A run has a priority:
``interactive`` (the default: a run started from the UI or a script) or ``batch`` (the nightly
deployment). An interactive shard task that waits for its lease holds one slot of a second GCL,
``glm:<model>:waiting``, while it waits; a batch shard task does not ask for a lease while that one
has a holder. Without it a batch run re-leases its slots the moment one of its shards ends, while
the interactive run polls every few seconds for its share, so an analyst waited for the whole
nightly run; now they wait for about one shard.

Without a Prefect API URL (ephemeral mode: no lease reaper, so a crashed holder would leak slots
for good) the flow falls back to one local limiter per run and says so in the summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings

from pipeline.errors import GlmExtractError
from pipeline.limiter import AdaptiveLimiter

LEASE_SECONDS = 120.0  # renewed every 90 s; after a crash the server reclaims slots ~2 min later
ACQUIRE_TIMEOUT_SECONDS = 6 * 3600.0
LOCAL_LABEL = "local (no Prefect server)"
WAITING_SLOTS = 10_000  # the waiting room's size: any number of interactive shard tasks may wait
YIELD_POLL_S = 1.0  # how often a batch shard task looks whether interactive ones still wait
Priority = Literal["interactive", "batch"]


class LimitMissing(GlmExtractError):
    """The account's global concurrency limit is absent or unusable on the Prefect server."""


def limit_name(model: str) -> str:
    """The GCL shared by every run of the account on ``model``."""
    return f"glm:{model}"


def waiting_name(model: str) -> str:
    """The GCL whose holders are interactive shard tasks waiting for a lease on ``model``."""
    return f"{limit_name(model)}:waiting"


def prefect_api_url() -> str | None:
    """The configured Prefect API (None: ephemeral mode, no dedicated server)."""
    return get_current_settings().api.url or None


@dataclass(frozen=True)
class Gate:
    """Where a shard's request slots come from: the account's GCL, or a local limiter."""

    label: str
    name: str | None = None  # GCL name; None: local
    cap: int | None = None  # the GCL's limit
    shared: AdaptiveLimiter | None = None  # the local limiter every shard of a run shares
    priority: Priority = "interactive"
    waiting: str | None = None  # the waiting room's GCL name (with ``name``)

    def slots_per_shard(self, concurrency: int, width: int) -> int:
        """Slots one shard task leases: the run's share, never more than the limit."""
        wanted = min(concurrency, self.cap or concurrency)
        return max(1, wanted // max(1, width))

    def limiter_for(self, slots: int) -> AdaptiveLimiter:
        """The limiter that gates one shard's requests."""
        return self.shared if self.shared is not None else AdaptiveLimiter(slots)

    @asynccontextmanager
    async def lease(self, slots: int) -> AsyncIterator[None]:
        """Hold ``slots`` of the GCL for the block (strict: a missing limit is an error)."""
        if self.name is None:
            yield
            return
        if self.waiting is None or self.priority == "batch":
            if self.waiting is not None:
                await self._after_interactive_waiters()
            async with self._slots(self.name, slots):
                yield
            return
        granted = asyncio.Event()
        announcer = asyncio.create_task(self._announce(self.waiting, granted))
        try:
            async with self._slots(self.name, slots):
                granted.set()
                await announcer  # the waiting-room slot is given back before the shard runs
                yield
        finally:
            granted.set()
            await asyncio.gather(announcer, return_exceptions=True)

    async def _announce(self, waiting: str, granted: asyncio.Event) -> None:
        """Hold a waiting-room slot (batch runs then hold back) until ``granted``."""
        async with self._slots(waiting, 1):
            await granted.wait()

    @staticmethod
    def _slots(name: str, slots: int) -> AbstractAsyncContextManager[object]:
        return concurrency(name, occupy=slots, strict=True, lease_duration=LEASE_SECONDS,
                           timeout_seconds=ACQUIRE_TIMEOUT_SECONDS)

    async def _after_interactive_waiters(self) -> None:
        """Return once no interactive shard task waits for a lease on this limit."""
        assert self.waiting is not None
        while True:
            waiting = await read_limit_response(self.waiting)
            if waiting is None or waiting.active_slots == 0:
                return
            await asyncio.sleep(YIELD_POLL_S)


def local_gate(concurrency: int) -> Gate:
    """One adaptive limiter shared by the run's shards (no cross-run cap)."""
    return Gate(label=LOCAL_LABEL, shared=AdaptiveLimiter(concurrency))


async def choose_gate(model: str, concurrency: int, priority: Priority = "interactive") -> Gate:
    """The GCL when a Prefect server is configured (it must exist and be active), else local."""
    if prefect_api_url() is None:
        return local_gate(concurrency)
    name = limit_name(model)
    limit = await read_limit_response(name)
    if limit is None:
        raise LimitMissing(f"global concurrency limit {name!r} does not exist on {prefect_api_url()}; "
                           f"create it with `glm-extract prefect-setup --model {model}`")
    if not limit.active or limit.limit < 1:
        raise LimitMissing(f"global concurrency limit {name!r} is disabled or 0; "
                           f"fix it with `glm-extract prefect-setup --model {model}`")
    if await read_limit_response(waiting_name(model)) is None:
        await ensure_limit(waiting_name(model), WAITING_SLOTS)
    return Gate(label=f"prefect:{name}", name=name, cap=limit.limit, priority=priority,
                waiting=waiting_name(model))


async def read_limit_response(name: str) -> GlobalConcurrencyLimitResponse | None:
    """The GCL called ``name``; None when it does not exist."""
    async with get_client() as client:
        try:
            return await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


async def read_limit(name: str) -> int | None:
    """The number of slots of GCL ``name``; None when it does not exist."""
    limit = await read_limit_response(name)
    return None if limit is None else limit.limit


async def ensure_limit(name: str, limit: int) -> Literal["created", "updated", "unchanged"]:
    """Create the GCL with ``limit`` slots, or set an existing one to ``limit`` (idempotent)."""
    current = await read_limit_response(name)
    async with get_client() as client:
        if current is None:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return "created"
        if current.limit == limit and current.active and not current.slot_decay_per_second:
            return "unchanged"
        update = GlobalConcurrencyLimitUpdate(limit=limit, active=True, slot_decay_per_second=0.0)
        await client.update_global_concurrency_limit(name, update)
        return "updated"
