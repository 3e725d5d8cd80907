"""Two flow runs share the account's cap: a short run started while a long one runs gets slots at the
long run's next shard boundary and finishes long before it; the cap is never exceeded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import serve_in_thread
from flows.extract import extract_documents
from flows.limits import choose_gate, ensure_limit, limit_name, read_limit_response
from flows.params import ExtractParams
from pipeline.settings import DEFAULT_MODEL
from tests.conftest import REPO
from tests.reliability.support import write_tickets

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]
CAP = 30
LONG_ROWS, SHORT_ROWS = 1600, 30  # long: 8 shards of 200, 4 at a time with 7 slots each


async def timed(params: ExtractParams) -> tuple[dict[str, Any], float]:
    result: dict[str, Any] = await extract_documents(params)
    return result, time.perf_counter()


def test_a_short_run_started_during_a_long_one_finishes_long_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLM_EXTRACT_SHARD_SIZE", "200")
    asyncio.run(ensure_limit(limit_name(DEFAULT_MODEL), CAP))
    long_in = write_tickets(tmp_path / "long.parquet", LONG_ROWS)
    short_in = write_tickets(tmp_path / "short.parquet", SHORT_ROWS, start=LONG_ROWS)
    config = EmulatorConfig(concurrency=CAP, latency=LatencySpec.parse("uniform:0.05,0.35"), seed=3)
    with serve_in_thread(config) as emulator:
        monkeypatch.setenv("GLM_EXTRACT_BASE_URL", emulator.base_url)
        nightly = ExtractParams(task="ticket_qa", input=str(long_in), output=str(tmp_path / "long.out.parquet"),
                                concurrency=CAP, priority="batch")
        analyst = ExtractParams(task="ticket_qa", input=str(short_in), output=str(tmp_path / "short.out.parquet"),
                                concurrency=CAP)

        async def both() -> tuple[tuple[dict[str, Any], float], tuple[dict[str, Any], float], float]:
            long_run = asyncio.ensure_future(timed(nightly))
            while emulator.stats()["requests_received"] < 120 and not long_run.done():  # the long run is going
                await asyncio.sleep(0.05)
            assert not long_run.done()
            started = time.perf_counter()
            short = await timed(analyst)
            return await long_run, short, started

        (long_summary, long_end), (short_summary, short_end), _ = asyncio.run(both())
        stats = emulator.stats()
    assert long_summary["status_counts"]["ok"] == LONG_ROWS and short_summary["status_counts"]["ok"] == SHORT_ROWS
    assert stats["max_in_flight"] <= CAP and stats["by_code"].get("1302", 0) == 0  # the cap held
    assert short_end < long_end


BATCH_RUN = """
import asyncio, sys
from flows.limits import choose_gate
MODEL, CAP, TASKS, SHARE, SHARD_S = sys.argv[1], 30, 4, 7, 2.0
async def shard_task(gate, index, leased):
    await asyncio.sleep(index * SHARD_S / TASKS)  # staggered boundaries, as real shards' are
    while True:  # back-to-back shards: the next shard task asks as soon as one ends
        async with gate.lease(SHARE):
            leased[index].set()
            await asyncio.sleep(SHARD_S)  # the shard's work
async def main():
    gate = await choose_gate(MODEL, CAP, "batch")
    leased = [asyncio.Event() for _ in range(TASKS)]
    tasks = [asyncio.create_task(shard_task(gate, i, leased)) for i in range(TASKS)]
    for event in leased:
        await event.wait()
    print("LEASED", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the test closes stdin
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
asyncio.run(main())
"""


def test_an_interactive_lease_is_granted_at_a_batch_run_s_next_shard_boundary() -> None:
    """A batch run (its own process, as a nightly flow run is) keeps four shard tasks of 7 of 30
    slots going back to back, re-leasing the moment a shard ends. An interactive run asking for 28
    slots gets them at the batch run's next shard boundaries, not when the batch run ends."""
    model = "glm-priority-test"
    asyncio.run(ensure_limit(limit_name(model), CAP))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(REPO)}
    batch = subprocess.Popen([sys.executable, "-c", BATCH_RUN, model], env=env, cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert batch.stdout is not None and batch.stdout.readline().strip() == "LEASED"

        async def ask() -> float | None:
            gate = await choose_gate(model, CAP, "interactive")
            asked = time.perf_counter()
            try:
                async with asyncio.timeout(30), gate.lease(28):
                    return time.perf_counter() - asked
            except TimeoutError:
                return None

        waited = asyncio.run(ask())
    finally:
        assert batch.stdin is not None
        batch.stdin.close()
        batch.wait(30)
    assert waited is not None, "the interactive run never got its slots while the batch run went on"
    assert waited < 10, f"the interactive run waited {waited:.1f} s for shards of 2 s"
    limit = asyncio.run(read_limit_response(limit_name(model)))
    assert limit is not None and limit.active_slots == 0
