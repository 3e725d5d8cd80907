from __future__ import annotations

import asyncio

from pipeline.limiter import AdaptiveLimiter


def test_never_more_than_cap_in_flight() -> None:
    limiter = AdaptiveLimiter(5)
    live = {"now": 0, "max": 0}

    async def work() -> None:
        async with limiter.slot():
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
            await asyncio.sleep(0.001)
            live["now"] -= 1

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(200):
                group.create_task(work())

    asyncio.run(main())
    assert live["max"] == 5 == limiter.max_in_flight and limiter.in_flight == 0


def test_aimd_halves_on_an_overload_once_per_cooldown_and_recovers() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(32, cooldown_s=1.0, clock=lambda: now[0])
    limiter.on_rate_limited()
    assert limiter.window == 31  # one rejection: one slot off
    for _ in range(6):
        limiter.on_rate_limited()  # a burst: the overload's share is reached on the 7th
    assert limiter.window == (31 - 5) * 0.5 == 13
    limiter.on_rate_limited()  # the same overload, within the cooldown: one slot, not another halving
    assert limiter.window == 12
    now[0] = 2.0
    limiter.on_rate_limited()
    assert limiter.window == 6  # still overloaded after the cooldown: halved again
    for _ in range(2000):
        limiter.on_success()
    assert limiter.limit == 32


def test_occasional_rate_limits_under_the_cap_do_not_shrink_the_window() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(30, cooldown_s=1.0, clock=lambda: now[0])
    for answer in range(10_000):  # 2 % of answers 1302, spread out, at 150 answers a second
        now[0] = answer / 150
        if answer % 50 == 7:
            limiter.on_rate_limited()
        else:
            limiter.on_success()
    assert limiter.limit == 30 and limiter.rate_limited == 200


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def main() -> AdaptiveLimiter:
        limiter = AdaptiveLimiter(1)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        limiter.release()
        await asyncio.wait_for(limiter.acquire(), 1)  # the slot is free again
        return limiter

    assert asyncio.run(main()).in_flight == 1
