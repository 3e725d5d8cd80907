"""8. What the retry loop costs per request, and what that is at the realistic profile's request rate.

    .venv/bin/python -m benchmarks.bench_retry                 # 20,000 sends; 300 rows on the realistic profile

Part 1 sends the same body ``--sends`` times through ``send_with_retry`` over an instant in-memory
transport (every answer a 200), so the CPU per send is the client and the retry loop and nothing
else. Part 2 runs ``--rows`` rows through the pipeline against the emulator's ``realistic`` profile
(token-based latency, its fault mix) at C=``--concurrency`` and takes the requests per second the
run really made. CPU per send × requests/s = the share of a core the retry loop and client take
at that rate; comparing it before and after a change to the loop says what the change is worth.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import REPO, TASK, fmt, make_tickets, result_line
from emulator.config import EmulatorConfig
from emulator.process import start_emulator
from pipeline.endpoints import online_target
from pipeline.glm.client import Endpoint, GLMClient
from pipeline.glm.retry import AttemptLog, RetryPolicy, send_with_retry
from pipeline.limiter import AdaptiveLimiter
from pipeline.runner import RunRequest, run_extraction
from pipeline.settings import Settings

ANSWER = (b'{"id":"t","request_id":"r","created":1,"model":"glm-4-air-250414","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"{}"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}')
BODY = {"model": "glm-4-air-250414", "messages": [{"role": "user", "content": "hi"}]}


async def _instant(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=ANSWER)


def cpu_per_send_us(sends: int) -> float:
    """CPU microseconds per ``send_with_retry`` call (client + retry loop + limiter), best of three."""
    async def go() -> float:
        client = GLMClient(httpx.MockTransport(_instant), Endpoint("http://glm.test/api/paas/v4", "sk-x"))
        limiter, abort, policy = AdaptiveLimiter(30), asyncio.Event(), RetryPolicy()
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(sends):
                await send_with_retry(client, BODY, limiter, policy, abort, AttemptLog())
            best = min(best, (time.process_time() - started) / sends)
        return best * 1e6
    return asyncio.run(go())


def realistic_requests_per_s(rows: int, concurrency: int, workdir: Path) -> float:
    """Requests per second of a run against the emulator's realistic profile."""
    source = workdir / "retry.parquet"
    make_tickets(rows).write_parquet(source)
    with start_emulator(EmulatorConfig.for_profile("realistic", concurrency=concurrency, seed=7)) as emu:
        settings = Settings(base_url=emu.base_url, concurrency=concurrency, schemas_dir=REPO / "schemas",
                            journal_path=workdir / "retry.sqlite")
        request = RunRequest(TASK, str(source), workdir / "retry.out.parquet")
        summary = asyncio.run(run_extraction(request, settings, online_target(settings)))
    return summary.requests.sent / summary.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=30)
    args = parser.parse_args(argv)
    per_send = cpu_per_send_us(args.sends)
    with tempfile.TemporaryDirectory(prefix="bench-retry-") as tmp:
        rate = realistic_requests_per_s(args.rows, args.concurrency, Path(tmp))
    share = per_send * 1e-6 * rate
    print(f"retry loop + client: {fmt(per_send, 1)} µs CPU per send (instant answers, best of 3 × {args.sends})")
    print(f"realistic profile at C={args.concurrency}: {fmt(rate, 1)} requests/s -> {fmt(100 * share, 3)} % of a core")
    print(result_line("retry", {"cpu_us_per_send": fmt(per_send, 1), "requests_s": fmt(rate, 1),
                                "core_share_pct": fmt(100 * share, 3)}))


if __name__ == "__main__":
    main()
