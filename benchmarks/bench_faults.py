"""7. Throughput under transient faults: are the slots kept busy while some rows wait?

    .venv/bin/python -m benchmarks.bench_faults                    # 6,000 rows, C=30, L=0.2 s, hangs of 10 s
    .venv/bin/python -m benchmarks.bench_faults --rows 300 --hang-seconds 1   # the smoke size

The same rows go through the pipeline twice against the emulator (fixed latency L, cap C): once
fault-free, once with 5 % transient faults — 2 % 1302 (rate limited), 1 % HTTP 500, 1 % connection
reset, 1 % of requests hung for ``--hang-seconds`` before they answer. Every request the client
makes is timed at the transport, failed and hung ones included, so

- slot occupancy = request-seconds on the wire ÷ (C × run seconds): 1.0 means a request was on the
  wire in every slot for the whole run;
- occupancy while work was left = the same, counted only up to the moment the last request was
  sent: after it no scheduler can fill a slot, and the run's end waits for its slowest request (a
  hang of 10 s ends a 70-second run with a mostly idle drain that a night-long run does not see);
- cap utilisation = rows/s ÷ what the wire time allows (C ÷ mean request-seconds per row), which
  is the same ratio seen from the rows' side.

A hung request occupies its slot (it is on the wire) but a row in back-off does not; the
question is whether rows behind them start meanwhile. The run is in-process (the emulator is its
own process), with the CLI's settings apart from the endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import REPO, TASK, fmt, load_average, make_tickets, result_line
from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from pipeline.endpoints import online_target
from pipeline.runner import RunRequest, run_extraction, transport_for
from pipeline.settings import Settings
from pipeline.summary import RunSummary

FAULT_MIX = {"1302": 0.02, "500": 0.01, "reset": 0.01, "hang": 0.01}


class TimingTransport(httpx.AsyncBaseTransport):
    """Records when every request is on the wire (until its answer is read whole, or it fails)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.spans: list[tuple[float, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            return await self.inner.handle_async_request(request)
        finally:
            ended = time.perf_counter()
            self.spans.append((started, ended))

    def busy_until(self, until: float) -> float:
        """Request-seconds on the wire before ``until``."""
        return sum(min(end, until) - start for start, end in self.spans if start < until)

    async def aclose(self) -> None:
        await self.inner.aclose()


def measure(rows: int, concurrency: int, latency: float, faults: dict[str, float], hang_s: float,
            workdir: Path, label: str) -> dict[str, Any]:
    """One run of ``rows`` rows; the figures."""
    source = workdir / f"{label}.parquet"
    make_tickets(rows).write_parquet(source)
    config = EmulatorConfig(concurrency=concurrency, latency=LatencySpec.parse(f"fixed:{latency}"), seed=7,
                            faults=faults, hang_seconds=hang_s)
    with start_emulator(config) as emu:
        settings = Settings(base_url=emu.base_url, concurrency=concurrency, schemas_dir=REPO / "schemas",
                            journal_path=workdir / f"{label}.sqlite")
        timing = TimingTransport(transport_for(settings))
        request = RunRequest(TASK, str(source), workdir / f"{label}.out.parquet")

        clock: list[float] = []

        async def go() -> RunSummary:
            async with timing:
                clock.append(time.perf_counter())
                return await run_extraction(request, settings, online_target(settings), transport=timing)

        summary = asyncio.run(go())
        received = emu.stats()
    busy_s = sum(end - start for start, end in timing.spans)  # request-seconds on the wire
    last_sent = max(start for start, _ in timing.spans)
    working = timing.busy_until(last_sent) / (concurrency * (last_sent - clock[0]))
    seconds = summary.seconds
    rows_s = rows / seconds
    allowed = concurrency / (busy_s / rows)  # rows/s if every slot were on the wire all the time
    return {
        "label": label, "rows": rows, "seconds": seconds, "rows_s": rows_s, "requests": len(timing.spans),
        "occupancy": busy_s / (concurrency * seconds), "cap_utilisation": rows_s / allowed,
        "occupancy_working": working, "drain_s": clock[0] + seconds - last_sent,
        "ideal_rows_s": concurrency / latency, "ok": summary.count("ok"),
        "retries": summary.requests.retries, "by_outcome": received.get("by_outcome", {}),
    }  # fmt: skip


def report(clean: dict[str, Any], faulty: dict[str, Any], concurrency: int, latency: float, hang_s: float) -> None:
    print(f"throughput under faults: C={concurrency}, L={latency} s, faults {FAULT_MIX} (hang {hang_s} s)"
          f" ({load_average()})")
    for f in (clean, faulty):
        print(f"  {f['label']:<11} {fmt(f['rows_s'], 1):>7} rows/s ({f['ok']}/{f['rows']} ok in"
              f" {fmt(f['seconds'], 1)} s; ideal C/L {fmt(f['ideal_rows_s'], 1)});"
              f"  slot occupancy {fmt(f['occupancy'])} ({fmt(f['occupancy_working'])} while work was left;"
              f" drain {fmt(f['drain_s'], 1)} s);  cap utilisation {fmt(f['cap_utilisation'])};"
              f"  {f['requests']} requests, {f['retries']} retries")
    print(result_line("faults", {
        "cap_utilisation_faults": fmt(faulty["cap_utilisation"]), "occupancy_faults": fmt(faulty["occupancy"]),
        "occupancy_working_faults": fmt(faulty["occupancy_working"]),
        "rows_s_faults": fmt(faulty["rows_s"], 1), "occupancy_clean": fmt(clean["occupancy"]),
        "rows_s_clean": fmt(clean["rows_s"], 1)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.2, help="fixed emulator latency, seconds")
    parser.add_argument("--hang-seconds", type=float, default=10.0, help="how long a hung request is held")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        clean = measure(args.rows, args.concurrency, args.latency, {}, args.hang_seconds, Path(tmp), "fault-free")
        faulty = measure(args.rows, args.concurrency, args.latency, FAULT_MIX, args.hang_seconds, Path(tmp),
                         "faults")
    report(clean, faulty, args.concurrency, args.latency, args.hang_seconds)


if __name__ == "__main__":
    main()
