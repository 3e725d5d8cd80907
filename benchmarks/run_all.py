"""Run benchmarks 1–4 (and 5 when the ``bench`` extra is importable) and end with one machine-readable line.

    make bench          # full sizes: 10k-row cap run, 10k-row overhead run, 100k + 1M memory, 1M-row journal
    make bench-smoke    # tiny sizes, all at once, well under a minute; CI runs it so the scripts keep working

Each benchmark runs as its own ``python -m benchmarks.<name>`` child (its output passes through) and
ends with a ``RESULT <name> k=v …`` line; the last line here is::

    BENCH cap_utilisation=<ratio> cpu_ms_per_row=<ms> peak_rss_mb_1m=<MB> resume_repeats=<n>/<in_flight>
          overhead_ratio=<ticket_qa tokens paid ÷ floor, cache priced> cny_per_1k_rows=<ticket_qa, with the cache>
          cap_utilisation_faults=<rows/s ÷ what the wire time allows, under 5 % transient faults>
          estimate_error=<ticket_qa: (estimate − actual) ÷ actual tokens, realistic profile>

(``mode=smoke`` is appended in smoke mode, where the memory figure is for the smoke size, not 1M.)
Figures are printed, never asserted: a benchmark is not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.bench_peers import PEERS, peer_available
from benchmarks.common import REPO

FULL: dict[str, list[str]] = {
    "bench_cap": ["--rows", "10000", "--concurrency", "50", "--latency", "0.2", "--tiers", "V0,V1,V2,V3",
                  "--tier-rows", "1000"],
    "bench_overhead": ["--rows", "10000", "--concurrency", "50", "--transports", "aiohttp,httpx"],
    "bench_memory": ["--sizes", "100000,1000000"],
    "bench_resume": ["--journal-rows", "1000000", "--new-rows", "1000", "--kill-rows", "3000"],
    "bench_peers": ["--rows", "2000", "--concurrency", "50", "--latency", "0.2"],
    "bench_cost": ["--descriptions"],
    "bench_faults": ["--rows", "6000", "--concurrency", "30", "--latency", "0.2", "--hang-seconds", "10"],
    "bench_estimate": [],
    "bench_prune_during_run": ["--kept-rows", "1000000"],
    "bench_defuse": ["--hostile-chars", "1000000"],
}
SMOKE: dict[str, list[str]] = {
    "bench_cap": ["--rows", "300", "--concurrency", "50", "--latency", "0.2", "--tiers", "V0", "--tier-rows", "40",
                  "--tier-latency-scale", "0.1"],
    "bench_overhead": ["--rows", "500", "--transports", "aiohttp", "--no-baseline"],
    "bench_memory": ["--sizes", "300,1200"],
    "bench_resume": ["--journal-rows", "1000", "--new-rows", "50", "--kill-rows", "200", "--no-baseline"],
    "bench_peers": ["--rows", "100", "--concurrency", "50", "--latency", "0.2"],
    "bench_cost": ["--rows", "20"],
    "bench_faults": ["--rows", "300", "--concurrency", "30", "--latency", "0.2", "--hang-seconds", "1"],
    "bench_estimate": ["--tasks", "ticket_qa"],
    "bench_prune_during_run": ["--old-rows", "2000", "--kept-rows", "2000", "--rows", "600"],
    "bench_defuse": ["--hostile-chars", "10000"],
}


def run_bench(name: str, args: list[str]) -> dict[str, str]:
    """Run one benchmark module, pass its output through, return its RESULT figures."""
    print(f"\n=== {name} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    process = start_bench(name, args)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return finish_bench(name, process, lines, started)


def start_bench(name: str, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def finish_bench(name: str, process: subprocess.Popen[str], lines: list[str], started: float) -> dict[str, str]:
    figures: dict[str, str] = {}
    for line in lines:
        if line.startswith("RESULT "):
            figures.update(pair.split("=", 1) for pair in line.split()[2:])  # a bench may print several
    if process.wait() != 0:
        print(f"=== {name} FAILED (exit {process.returncode})", flush=True)
    print(f"=== {name} took {time.perf_counter() - started:.0f} s", flush=True)
    return figures


def run_parallel(plan: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Smoke mode: all benchmarks at once (their figures then mean nothing; the point is that they run)."""
    started = time.perf_counter()
    running = {name: start_bench(name, args) for name, args in plan.items()}
    results = {}
    for name, process in running.items():
        output, _ = process.communicate()
        print(f"\n=== {name} {' '.join(plan[name])}\n{output}", end="", flush=True)
        results[name] = finish_bench(name, process, output.splitlines(keepends=True), started)
    return results


def installed_peers(python: str) -> list[str]:
    return [name for name, (module, _) in PEERS.items() if peer_available(python, module)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--only", default="", help="comma list of benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    chosen = [n for n in plan if not args.only or n.removeprefix("bench_") in args.only.split(",") or n in args.only]
    peer_python = os.environ.get("GLM_BENCH_PEER_PYTHON", sys.executable)
    runs: dict[str, list[str]] = {}
    for name in chosen:
        runs[name] = plan[name]
        if name == "bench_peers":
            peers = installed_peers(peer_python)
            if not peers:
                print(f"\n=== bench_peers skipped: neither openai nor bespokelabs-curator imports in {peer_python}"
                      " (install the `bench` extra into a separate venv and set GLM_BENCH_PEER_PYTHON)")
                del runs[name]
                continue
            runs[name] = [*plan[name], "--peers", ",".join(peers), "--peer-python", peer_python]
    if args.smoke:
        results = run_parallel(runs)
    else:
        results = {name: run_bench(name, bench_args) for name, bench_args in runs.items()}
    print("\n" + bench_line(results, smoke=args.smoke))
    return 0 if all(results.values()) else 1


def bench_line(results: dict[str, dict[str, str]], *, smoke: bool) -> str:
    """The one machine-readable summary line (``nan`` for a benchmark that did not report)."""
    cap = results.get("bench_cap", {}).get("cap_utilisation", "nan")
    cpu = results.get("bench_overhead", {}).get("cpu_ms_per_row", "nan")
    rss = results.get("bench_memory", {}).get("peak_rss_mb", "nan")
    repeats = results.get("bench_resume", {}).get("resume_repeats", "nan")
    line = f"BENCH cap_utilisation={cap} cpu_ms_per_row={cpu} peak_rss_mb_1m={rss} resume_repeats={repeats}"
    cost = results.get("bench_cost", {})
    line += f" overhead_ratio={cost.get('overhead_ratio', 'nan')} cny_per_1k_rows={cost.get('cny_per_1k_rows', 'nan')}"
    line += f" cap_utilisation_faults={results.get('bench_faults', {}).get('cap_utilisation_faults', 'nan')}"
    line += f" estimate_error={results.get('bench_estimate', {}).get('error_ticket_qa', 'nan')}"
    return line + (" mode=smoke" if smoke else "")


if __name__ == "__main__":
    raise SystemExit(main())
