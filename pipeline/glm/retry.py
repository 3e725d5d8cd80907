"""Send one request with retries: only what ``is_retryable`` says, jittered exponential backoff.

Each attempt holds a limiter slot only while it is on the wire, never while backing off. Once the
run is stopping (``abort`` set), no new attempt starts and backoff sleeps end at once.

The first attempt runs bare: nearly every request succeeds at once, and building tenacity's
machinery for it cost more CPU than the rest of this module (docs/performance.md). Only after a
retryable failure does tenacity take over, counting from the second attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pipeline.glm.client import ChatAnswer, GLMClient
from pipeline.glm.errors import RateLimited, is_retryable
from pipeline.limiter import AdaptiveLimiter


class RunStopping(Exception):
    """The run is aborting; this request was not sent."""


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


async def send_with_retry(
    client: GLMClient,
    body: Mapping[str, Any],
    limiter: AdaptiveLimiter,
    policy: RetryPolicy,
    abort: asyncio.Event,
    log: AttemptLog,
) -> ChatAnswer:
    """The first successful answer; re-raises the last error when retries are exhausted."""

    try:
        return await _attempt_once(client, body, limiter, abort, log)
    except Exception as exc:
        if policy.max_attempts < 2 or not is_retryable(exc):
            raise

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(abort.wait(), timeout=seconds)

    def wait(state: RetryCallState) -> float:  # tenacity's attempt n is the request's attempt n + 1
        return backoff_s(policy, state.attempt_number + 1)

    await sleep(backoff_s(policy, 1))
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait,
        stop=stop_after_attempt(policy.max_attempts - 1),
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _attempt_once(client, body, limiter, abort, log)
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
) -> ChatAnswer:
    await limiter.acquire()
    try:
        if abort.is_set():
            raise RunStopping("the run is stopping")
        log.attempts += 1
        try:
            answer = await client.chat(body)
        except RateLimited as exc:
            log.rate_limited += 1
            log.codes.append(exc.code)
            limiter.on_rate_limited()
            raise
        except Exception as exc:
            log.codes.append(getattr(exc, "code", type(exc).__name__))
            raise
    finally:
        limiter.release()
    limiter.on_success()
    return answer
