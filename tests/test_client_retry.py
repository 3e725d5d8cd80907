"""The GLM client and the retry loop, through httpx.MockTransport."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pipeline.glm.client import Endpoint, GLMClient
from pipeline.glm.errors import FatalError, RowError, TransientError
from pipeline.glm.retry import AttemptLog, RetryPolicy, RunStopping, backoff_s, send_with_retry
from pipeline.limiter import AdaptiveLimiter
from tests.fakes import FakeGLM, completion, glm_error

BODY = {"model": "glm-4-air-250414", "messages": [{"role": "user", "content": "hi"}]}
FAST = RetryPolicy(max_attempts=4, initial_s=0.001, max_s=0.002)


async def _send(fake: FakeGLM, limiter: AdaptiveLimiter | None = None, abort: asyncio.Event | None = None,
                log: AttemptLog | None = None) -> object:
    async with fake.transport() as transport:
        client = GLMClient(transport, Endpoint("http://glm.test/api/paas/v4", "sk-secret"))
        return await send_with_retry(client, BODY, limiter or AdaptiveLimiter(4), FAST,
                                     abort or asyncio.Event(), log or AttemptLog())


def test_answer_usage_and_fresh_request_id_per_attempt() -> None:
    fake = FakeGLM(script=[glm_error(500, "500"), completion('{"a": 1}', prompt_tokens=7, completion_tokens=3)])
    log = AttemptLog()
    answer = asyncio.run(_send(fake, log=log))
    assert answer.content == '{"a": 1}' and answer.prompt_tokens == 7 and answer.completion_tokens == 3  # type: ignore[attr-defined]
    ids = [r["request_id"] for r in fake.requests]
    assert len(ids) == 2 and len(set(ids)) == 2 and log.attempts == 2
    assert fake.headers[0]["authorization"] == "Bearer sk-secret"
    assert fake.headers[0]["user-agent"].startswith("glm-extract/")


def test_1302_is_retried_and_shrinks_the_window() -> None:
    limiter = AdaptiveLimiter(8)
    fake = FakeGLM(script=[glm_error(429, "1302"), glm_error(429, "1302")], default=completion("{}"))
    log = AttemptLog()
    asyncio.run(_send(fake, limiter, log=log))
    assert log.attempts == 3 and log.rate_limited == 2
    assert limiter.limit < 8


def test_1113_as_429_is_fatal_and_not_retried() -> None:
    fake = FakeGLM(default=glm_error(429, "1113", "Insufficient balance or no resource package."))
    with pytest.raises(FatalError) as caught:
        asyncio.run(_send(fake))
    assert caught.value.code == "1113" and len(fake.requests) == 1
    assert "sk-secret" not in str(caught.value)


def test_1301_is_a_row_error_not_retried() -> None:
    fake = FakeGLM(default=glm_error(400, "1301", "unsafe content"))
    with pytest.raises(RowError) as caught:
        asyncio.run(_send(fake))
    assert caught.value.filtered and len(fake.requests) == 1


def test_retries_are_bounded_and_reraise_the_last_error() -> None:
    fake = FakeGLM(default=glm_error(503, "503"))
    with pytest.raises(TransientError):
        asyncio.run(_send(fake))
    assert len(fake.requests) == FAST.max_attempts


def test_timeouts_and_resets_are_transient() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if calls["n"] == 2:
            raise httpx.RemoteProtocolError("reset", request=request)
        return completion("{}")

    async def go() -> object:
        async with httpx.MockTransport(flaky) as transport:
            client = GLMClient(transport, Endpoint("http://glm.test"))
            return await send_with_retry(client, BODY, AdaptiveLimiter(2), FAST, asyncio.Event(), AttemptLog())

    assert asyncio.run(go()).content == "{}"  # type: ignore[attr-defined]
    assert calls["n"] == 3


def test_no_attempt_starts_once_the_run_aborts() -> None:
    abort = asyncio.Event()
    abort.set()
    fake = FakeGLM(default=completion("{}"))
    with pytest.raises(RunStopping):
        asyncio.run(_send(fake, abort=abort))
    assert fake.requests == []


def test_tool_call_arguments_are_the_content() -> None:
    fake = FakeGLM(default=completion(None, finish_reason="tool_calls", tool_args='{"x": 1}'))
    assert asyncio.run(_send(fake)).content == '{"x": 1}'  # type: ignore[attr-defined]


def test_one_attempt_policy_never_retries() -> None:
    fake = FakeGLM(default=glm_error(503, "503"))
    with pytest.raises(TransientError):
        asyncio.run(_send_with(fake, RetryPolicy(max_attempts=1, initial_s=0.001, max_s=0.002)))
    assert len(fake.requests) == 1


def test_a_run_that_stops_during_the_first_backoff_sends_nothing_more() -> None:
    abort = asyncio.Event()

    def fail_then_stop(body: dict[str, object]) -> httpx.Response:
        abort.set()
        return glm_error(503, "503")

    fake = FakeGLM(default=fail_then_stop)
    slow = RetryPolicy(max_attempts=5, initial_s=30.0, max_s=60.0)  # a backoff the abort must cut short
    with pytest.raises(RunStopping):
        asyncio.run(asyncio.wait_for(_send_with(fake, slow, abort=abort), timeout=5))
    assert len(fake.requests) == 1


@pytest.mark.parametrize("failed", [1, 2, 3, 6, 12])
def test_backoff_is_full_jitter_under_an_exponential_ceiling(failed: int) -> None:
    policy = RetryPolicy(max_attempts=8, initial_s=0.5, max_s=30.0)
    ceiling = min(30.0, 0.5 * 2 ** (failed - 1))
    waits = [backoff_s(policy, failed) for _ in range(400)]
    assert all(0 <= w <= ceiling for w in waits)
    assert max(waits) > 0.8 * ceiling and min(waits) < 0.2 * ceiling  # spread over the whole range


async def _send_with(fake: FakeGLM, policy: RetryPolicy, abort: asyncio.Event | None = None) -> object:
    async with fake.transport() as transport:
        client = GLMClient(transport, Endpoint("http://glm.test"))
        return await send_with_retry(client, BODY, AdaptiveLimiter(2), policy, abort or asyncio.Event(), AttemptLog())
