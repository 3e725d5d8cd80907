"""Send one request with retries: only what ``is_retryable`` says, jittered exponential backoff.

Each attempt holds a limiter slot only while it is on the wire, never while backing off. When a
slot is granted the attempt is admitted (the run's budget reserves its worst-case cost, see
``pipeline.budget``) or refused. Once the run is stopping (``abort`` set), no new attempt starts,
backoff sleeps end at once, and attempts on the wire are cancelled when ``abort`` is a
:class:`RunStop`.

Tenacity is the one retry loop, first attempt included (docs/decisions.md D28 has the measurement
that decided it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from pipeline.glm.client import ChatAnswer, GLMClient
from pipeline.glm.errors import FatalError, RateLimited, is_retryable
from pipeline.limiter import AdaptiveLimiter


class RunStopping(Exception):
    """The run is aborting; this request was not sent, or was cancelled on the wire."""


STOP_MESSAGE = "the run stopped"


class RunStop(asyncio.Event):
    """The run's one stop signal and its reason. :meth:`stop` records why (the first account-wide
    error wins) and sets the event: no new attempt starts, backoff sleeps end, and the attempts
    still on the wire are cancelled ``grace_s`` later — answers due any moment are kept (they may
    be paid for already), while a stop does not wait for hung requests (a read timeout can be
    minutes). The runner turns :attr:`reason` into the run's :class:`~pipeline.errors.RunAborted`."""

    def __init__(self, grace_s: float = 1.0) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.reason: FatalError | None = None
        self._on_wire: set[asyncio.Task[Any]] = set()

    def stop(self, reason: FatalError) -> None:
        """Stop the run because of ``reason``."""
        if self.reason is None:
            self.reason = reason
        self.set()

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        with contextlib.suppress(RuntimeError):  # set outside the event loop: nothing is on the wire
            asyncio.get_running_loop().call_later(self.grace_s, self._cancel_on_wire)

    def _cancel_on_wire(self) -> None:
        for task in list(self._on_wire):
            task.cancel(STOP_MESSAGE)

    @contextlib.contextmanager
    def on_wire(self) -> Iterator[None]:
        """Mark the current task as having a request on the wire for the block."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._on_wire.add(task)
        try:
            yield
        finally:
            self._on_wire.discard(task)


class Admission(Protocol):
    """Decides, once a slot is granted, whether an attempt may be sent (e.g. the run's budget)."""

    async def admit(self) -> float:
        """Reserve what the attempt may cost and return it; raise to refuse the attempt."""

    def refund(self, reserved: float) -> None:
        """The attempt ended without an answer: give its reservation back."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_s: float = 0.5
    max_s: float = 30.0


@dataclass
class AttemptLog:
    """Counts what the retries of one request did (read after success or failure)."""

    attempts: int = 0
    rate_limited: int = 0
    codes: list[str] = field(default_factory=list)
    reserved: float = 0.0  # what the answered attempt had reserved (settled by the caller)


async def send_with_retry(
    client: GLMClient,
    body: Mapping[str, Any],
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    abort: asyncio.Event,
    log: AttemptLog,
    admission: Admission | None = None,
) -> ChatAnswer:
    """The first successful answer; re-raises the last error when retries are exhausted."""

    async def sleep(seconds: float) -> None:  # a stop of the run ends the back-off at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(abort.wait(), timeout=seconds)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=lambda state: backoff_s(policy, state.attempt_number),
        stop=stop_after_attempt(policy.max_attempts),
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _attempt_once(client, body, limiter, abort, log, admission)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def backoff_s(policy: RetryPolicy, failed_attempts: int) -> float:
    """The pause after ``failed_attempts`` attempts: uniform in [0, min(max, initial × 2^(n-1))]
    ("full jitter", the same as tenacity's ``wait_random_exponential``)."""
    ceiling = min(policy.max_s, policy.initial_s * 2 ** (failed_attempts - 1))
    return random.uniform(0, ceiling)


async def _attempt_once(
    client: GLMClient,
    body: Mapping[str, Any],
    limiter: AdaptiveLimiter,
    abort: asyncio.Event,
    log: AttemptLog,
    admission: Admission | None,
) -> ChatAnswer:
    await limiter.acquire()
    try:
        if abort.is_set():
            raise RunStopping("the run is stopping")
        reserved = await admission.admit() if admission is not None else 0.0
        if abort.is_set():  # the stop came while the admission waited
            if admission is not None:
                admission.refund(reserved)
            raise RunStopping("the run is stopping")
        log.attempts += 1
        try:
            answer = await _on_the_wire(client, body, abort)
        except BaseException as exc:
            if admission is not None:
                admission.refund(reserved)
            _note_failure(log, limiter, exc)
            raise
        log.reserved = reserved
    finally:
        limiter.release()
    limiter.on_success()
    return answer


def _note_failure(log: AttemptLog, limiter: AdaptiveLimiter, exc: BaseException) -> None:
    log.codes.append(getattr(exc, "code", type(exc).__name__))
    if isinstance(exc, RateLimited):
        log.rate_limited += 1
        limiter.on_rate_limited()


async def _on_the_wire(client: GLMClient, body: Mapping[str, Any], abort: asyncio.Event) -> ChatAnswer:
    """One attempt; a stop of the run cancels it on the wire (seen here as :class:`RunStopping`)."""
    if not isinstance(abort, RunStop):
        return await client.chat(body)
    try:
        with abort.on_wire():
            return await client.chat(body)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if abort.is_set() and task is not None and task.uncancel() == 0:
            raise RunStopping("cancelled on the wire: the run stopped") from None
        raise
