"""Where the pipeline's own CPU goes: one instant-answer run in this process under cProfile.

    .venv/bin/python -m benchmarks.profile_run --rows 3000 --top 35

Not part of ``make bench``; a tool for finding the next bottleneck behind bench_overhead's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, TASK, emulator, write_tickets
from pipeline.glm.client import Endpoint
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings


def profile_run(rows: int, concurrency: int, transport: str, top: int, sort: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        source = write_tickets(workdir / "in.parquet", rows)
        settings = Settings(concurrency=concurrency, journal_path=workdir / "j.sqlite",
                            schemas_dir=REPO / "schemas", transport=transport)  # type: ignore[arg-type]
        with emulator(concurrency, "fixed:0") as emu:
            target = Target(Endpoint(emu.base_url), "custom")
            request = RunRequest(TASK, str(source), workdir / "out.parquet")
            profiler = cProfile.Profile()
            started, cpu = time.perf_counter(), time.process_time()
            profiler.enable()
            asyncio.run(run_extraction(request, settings, target))
            profiler.disable()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{rows} rows in {wall:.2f} s, {1000 * cpu / rows:.3f} ms CPU/row (under the profiler)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--transport", default="aiohttp")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--sort", default="tottime", help="pstats sort key: tottime or cumulative")
    args = parser.parse_args(argv)
    profile_run(args.rows, args.concurrency, args.transport, args.top, args.sort)


if __name__ == "__main__":
    main()
