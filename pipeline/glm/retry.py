"""Send one request with retries: only what ``is_retryable`` says, jittered exponential backoff.

Each attempt holds a limiter slot only while it is on the wire, never while backing off. Once the
run is stopping (``abort`` set), no new attempt starts and backoff sleeps end at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

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

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(abort.wait(), timeout=seconds)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait_random_exponential(multiplier=policy.initial_s, max=policy.max_s),
        stop=stop_after_attempt(policy.max_attempts),
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _attempt_once(client, body, limiter, abort, log)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _attempt_once(
    client: GLMClient,
    body: Mapping[str, Any],
    limiter: AdaptiveLimiter,
    abort: asyncio.Event,
    log: AttemptLog,
) -> ChatAnswer:
    async with limiter.slot():
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
    limiter.on_success()
    return answer
