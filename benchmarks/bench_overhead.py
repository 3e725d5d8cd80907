"""2. Own overhead: the pipeline's CPU per row when the emulator answers instantly.

    .venv/bin/python -m benchmarks.bench_overhead                  # 10,000 rows, C=50, both transports
    .venv/bin/python -m benchmarks.bench_overhead --rows 1000 --transports aiohttp

With zero latency the cap is no longer the limit, so rows/s shows what our own code (render, key,
HTTP client, parse, validation, journal, table assembly, Parquet output) costs. CPU comes from the
child's rusage. The fixed cost of a run (interpreter start, imports, input checks: measured on a
10-row run) is subtracted to give the marginal CPU per row, the figure the target is about; the
gross figure is printed too. The emulator's own CPU is printed beside it: on a 2-core machine the
two processes share the cores, so the emulator must not be what limits rows/s. The same bodies are
first sent by a bare aiohttp client (HTTP + orjson, nothing else): the floor any Python client pays.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import (
    CliRun,
    emulator,
    fmt,
    make_tickets,
    proc_cpu_seconds,
    raw_reference,
    render_bodies,
    result_line,
    run_cli,
    write_tickets,
)


def measure_overhead(rows: int, concurrency: int, transport: str, workdir: Path,
                     baseline: bool = True) -> dict[str, float]:
    """One instant-answer run with ``transport``, less a 10-row run's fixed cost (gross without ``baseline``)."""
    frame = make_tickets(rows)
    source = workdir / f"overhead-{rows}.parquet"
    frame.write_parquet(source)
    small = write_tickets(workdir / "overhead-10.parquet", 10, seed=99)
    with emulator(concurrency, "fixed:0") as emu:
        raw = raw_reference(emu.base_url, render_bodies(frame), concurrency)
        emu.reset()
        base_cpu = 0.0
        if baseline:
            base_cpu = _run(small, workdir / f"small-{transport}", emu.base_url, concurrency, transport).cpu_s
        emu_before = proc_cpu_seconds(emu.pid)
        run = _run(source, workdir / f"big-{transport}", emu.base_url, concurrency, transport)
        emu_cpu = proc_cpu_seconds(emu.pid) - emu_before
    seconds = float(run.summary["seconds"])
    marginal = (run.cpu_s - base_cpu) / (rows - 10 if baseline else rows)
    return {
        "rows": rows, "concurrency": concurrency, "rows_s": rows / seconds, "run_seconds": seconds,
        "cpu_s": run.cpu_s, "fixed_cpu_s": base_cpu, "cpu_ms_per_row": 1000 * marginal,
        "gross_cpu_ms_per_row": 1000 * run.cpu_s / rows, "cpu_s_per_1000_rows": 1000 * marginal,
        "emulator_cpu_ms_per_row": 1000 * emu_cpu / rows, "max_rss_mb": run.max_rss_mb,
        "sent": run.summary["requests"]["sent"], "raw_cpu_ms_per_row": raw.cpu_ms_per_row, "raw_rows_s": raw.rows_s,
    }  # fmt: skip


def _run(source: Path, stem: Path, base_url: str, concurrency: int, transport: str) -> CliRun:
    return run_cli(source, stem.with_suffix(".parquet"), base_url, concurrency, stem.with_suffix(".sqlite"),
                   {"GLM_EXTRACT_TRANSPORT": transport})


def report(transport: str, f: dict[str, float]) -> None:
    print(f"own overhead [{transport}]: {f['rows']} rows, C={f['concurrency']}, instant answers")
    print(f"  throughput             {fmt(f['rows_s'], 1)} rows/s ({fmt(f['run_seconds'], 2)} s run clock)")
    print(f"  pipeline CPU           {fmt(f['cpu_ms_per_row'])} ms/row marginal"
          f" = {fmt(f['cpu_s_per_1000_rows'], 2)} CPU s per 1,000 rows"
          f"  (gross {fmt(f['gross_cpu_ms_per_row'])} ms/row incl. {fmt(f['fixed_cpu_s'], 2)} s fixed start-up)")
    print(f"  raw aiohttp floor      {fmt(f['raw_cpu_ms_per_row'])} ms/row, {fmt(f['raw_rows_s'], 1)} rows/s"
          " (same bodies, same emulator: HTTP + orjson only, nothing else)")
    print(f"  emulator CPU           {fmt(f['emulator_cpu_ms_per_row'])} ms/row;  pipeline peak RSS"
          f" {fmt(f['max_rss_mb'], 0)} MB;  requests {f['sent']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--transports", default="aiohttp,httpx", help="comma list: aiohttp (default), httpx")
    parser.add_argument("--no-baseline", action="store_true", help="gross CPU only, no 10-row run (smoke)")
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for transport in args.transports.split(","):
            figures[transport] = measure_overhead(args.rows, args.concurrency, transport, Path(tmp),
                                                  baseline=not args.no_baseline)
            report(transport, figures[transport])
    first = next(iter(figures.values()))
    line = {"cpu_ms_per_row": fmt(first["cpu_ms_per_row"]), "rows_s": fmt(first["rows_s"], 1)}
    if "httpx" in figures and "aiohttp" in figures:
        ratio = figures["httpx"]["cpu_ms_per_row"] / figures["aiohttp"]["cpu_ms_per_row"]
        print(f"  stock httpx pool costs {fmt(ratio, 1)}x the CPU per row of the aiohttp transport")
        line["httpx_over_aiohttp"] = fmt(ratio, 2)
    print(result_line("overhead", line))


if __name__ == "__main__":
    main()
