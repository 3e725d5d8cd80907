"""3. Memory: peak RSS of the pipeline process at two input sizes, instant answers.

    .venv/bin/python -m benchmarks.bench_memory                      # 100,000 and 1,000,000 rows
    .venv/bin/python -m benchmarks.bench_memory --sizes 5000,20000   # the smoke version

Shards stream (``iter_batches``, two shards in flight, one part file per shard), so peak RSS should
not grow with the input. Peak RSS is the child's own high-water mark (``VmHWM``, see
``common.wait_cli`` for why not ``ru_maxrss``); the RSS is also sampled once a second from ``/proc``
so the curve over the run can be read (start, middle, end). The 1M-row run takes as long as 1M
instant requests take on the machine (≈ 8–10 min on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (
    cli_argv,
    cli_env,
    emulator,
    fmt,
    proc_status_kb,
    result_line,
    start_cli,
    wait_cli,
    write_tickets,
)


def sample_rss(pid: int, samples: list[float], stop: threading.Event) -> None:
    """Append the child's RSS once a second until ``stop``."""
    while not stop.wait(1.0):
        value = proc_status_kb(pid, "VmRSS")
        if value is not None:
            samples.append(value / 1024)


def measure_memory(rows: int, concurrency: int, workdir: Path) -> dict[str, float]:
    source = write_tickets(workdir / f"mem-{rows}.parquet", rows)
    output = workdir / f"mem-{rows}.out.parquet"
    samples: list[float] = []
    stop = threading.Event()
    with emulator(concurrency, "fixed:0") as emu:
        started = time.perf_counter()
        env = cli_env(workdir / f"mem-{rows}.sqlite")
        process = start_cli(cli_argv(source, output, emu.base_url, concurrency), env, output.with_suffix(".log"))
        sampler = threading.Thread(target=sample_rss, args=(process.pid, samples, stop), daemon=True)
        sampler.start()
        run = wait_cli(process, started, output)
        stop.set()
    if run.returncode != 0:
        raise RuntimeError(f"glm-extract exited {run.returncode}: {output.with_suffix('.log').read_text()[-2000:]}")
    third = max(1, len(samples) // 3)
    return {
        "rows": rows, "peak_rss_mb": run.max_rss_mb, "wall_s": run.wall_s, "rows_s": rows / run.wall_s,
        "rss_first_third_mb": max(samples[:third], default=0.0),
        "rss_middle_third_mb": max(samples[third:2 * third], default=0.0),
        "rss_last_third_mb": max(samples[2 * third:], default=0.0),
        "output_mb": output.stat().st_size / 2**20,
    }  # fmt: skip


def report(f: dict[str, float]) -> None:
    print(f"  {f['rows']:>9,} rows  peak RSS {fmt(f['peak_rss_mb'], 0)} MB  (max RSS by third of the run:"
          f" {fmt(f['rss_first_third_mb'], 0)} / {fmt(f['rss_middle_third_mb'], 0)} /"
          f" {fmt(f['rss_last_third_mb'], 0)} MB)  {fmt(f['rows_s'], 0)} rows/s, {fmt(f['wall_s'], 0)} s,"
          f" output {fmt(f['output_mb'], 1)} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma list of row counts, small first")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"memory: instant answers, C={args.concurrency}, default shard size")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for rows in sizes:
            results.append(measure_memory(rows, args.concurrency, Path(tmp)))
            report(results[-1])
            for stale in Path(tmp).glob(f"mem-{rows}*"):
                stale.unlink()
    small, large = results[0], results[-1]
    growth = large["peak_rss_mb"] / small["peak_rss_mb"]
    print(f"  {large['rows'] / small['rows']:.0f}x the rows -> {fmt(growth, 2)}x the peak RSS")
    print(result_line("memory", {"rows": large["rows"], "peak_rss_mb": fmt(large["peak_rss_mb"], 0),
                                 "small_rows": small["rows"], "small_peak_rss_mb": fmt(small["peak_rss_mb"], 0),
                                 "growth": fmt(growth, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
