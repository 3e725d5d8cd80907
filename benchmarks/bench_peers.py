"""5. Peers, side by side on the same emulator in the same run: glm-extract, a hand-written baseline
(``openai`` client + ``asyncio.Semaphore``), and bespokelabs-curator.

    .venv/bin/python -m benchmarks.bench_peers --peer-python /tmp/benchvenv/bin/python
    .venv/bin/python -m benchmarks.bench_peers --rows 2000 --concurrency 50 --latency 0.2

Peers live in the optional ``bench`` extra, never in the main install; install them into a separate
venv (``python -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install openai bespokelabs-curator``)
and point ``--peer-python`` (or ``GLM_BENCH_PEER_PYTHON``) at it. A peer whose package does not
import is skipped with a message. Every contender gets the same rows (the peers get the exact
request bodies glm-extract renders), the same emulator (cap C, fixed latency L, reset between
contenders) and is measured the same way: a child process, its CPU from ``os.wait4`` and its peak RSS
from its own ``VmHWM`` (``common.wait_cli``). CPU per row
is marginal: a 10-row run of the same contender gives its fixed start-up cost, subtracted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.common import (
    REPO,
    EmulatorProcess,
    cli_argv,
    cli_env,
    emulator,
    fmt,
    load_average,
    make_tickets,
    render_bodies,
    result_line,
    run_child,
)

PEERS = {"openai": ("openai", "peer_openai.py"), "curator": ("bespokelabs.curator", "peer_curator.py")}


@dataclass(frozen=True)
class Contender:
    name: str
    rows_s: float
    cpu_ms_per_row: float
    max_rss_mb: float
    ok: int
    over_cap: int
    requests: int


def write_requests(frame: pl.DataFrame, path: Path) -> Path:
    with path.open("w") as sink:
        for row_id, body in zip(frame.get_column("ticket_id"), render_bodies(frame), strict=True):
            sink.write('{"id": ' + json.dumps(row_id) + ', "body": ' + body.decode() + "}\n")
    return path


def measure(name: str, argv_for: Any, env: dict[str, str], emu: EmulatorProcess, rows: int,
            workdir: Path) -> Contender:
    """Run ``argv_for(size)`` at 10 rows and at ``rows``; the difference gives the marginal CPU."""
    small = run_child(argv_for(10), env, workdir / f"{name}-10.log", workdir / f"{name}-10.out")
    emu.reset()
    run = run_child(argv_for(rows), env, workdir / f"{name}.log", workdir / f"{name}.out")
    stats = emu.stats()
    seconds = _own_seconds(workdir / f"{name}.log", workdir / f"{name}.out.parquet") or run.wall_s
    return Contender(name, rows / seconds, 1000 * (run.cpu_s - small.cpu_s) / (rows - 10), run.max_rss_mb,
                     stats["completed_ok"], stats["by_outcome"].get("over_capacity", 0), stats["requests_received"])


def _own_seconds(log: Path, output: Path) -> float | None:
    """The contender's own clock (excludes interpreter start): the summary, or the peer's JSON line."""
    summary = output.with_name(output.name + ".summary.json")
    if summary.exists():
        return float(json.loads(summary.read_text())["seconds"])
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return float(json.loads(lines[-1])["seconds"]) if lines else None


def peer_available(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


def run_peers(rows: int, concurrency: int, latency: float, peer_python: str, names: list[str],
              workdir: Path) -> list[Contender]:
    inputs = {10: make_tickets(10, seed=99), rows: make_tickets(rows)}  # distinct rows: no journal hits
    for n, part in inputs.items():
        part.write_parquet(workdir / f"in-{n}.parquet")
        write_requests(part, workdir / f"in-{n}.jsonl")
    results = []
    with emulator(concurrency, f"fixed:{latency}") as emu:

        def ours(n: int) -> list[str]:
            return cli_argv(workdir / f"in-{n}.parquet", workdir / f"glm-extract{'-10' if n == 10 else ''}.out.parquet",
                            emu.base_url, concurrency)

        results.append(measure("glm-extract", ours, cli_env(workdir / "j.sqlite"), emu, rows, workdir))
        for name in names:
            module, script = PEERS[name]
            if not peer_available(peer_python, module):
                print(f"  skipped {name}: `import {module}` fails in {peer_python} (install the bench extra there)")
                continue

            def peer(n: int, script: str = script, name: str = name) -> list[str]:
                return [peer_python, str(REPO / "benchmarks" / script), "--requests", str(workdir / f"in-{n}.jsonl"),
                        "--output", str(workdir / f"{name}-{n}.jsonl"), "--base-url", emu.base_url,
                        "--concurrency", str(concurrency)]  # fmt: skip

            env = {**os.environ, "CURATOR_CACHE_DIR": str(workdir / f"{name}-cache")}
            try:
                results.append(measure(name, peer, env, emu, rows, workdir))
            except RuntimeError as exc:
                print(f"  {name} failed: {exc}")
    return results


def report(results: list[Contender], rows: int, concurrency: int, latency: float, load: str) -> None:
    ideal = concurrency / latency
    print(f"peers: {rows} rows, C={concurrency}, fixed latency {latency} s, ideal {fmt(ideal, 1)} rows/s ({load})")
    print(f"  {'contender':<12} {'rows/s':>8} {'of C/L':>7} {'CPU ms/row':>11} {'peak RSS MB':>12} {'ok':>6}"
          f" {'over cap':>9} {'requests':>9}")
    for c in results:
        print(f"  {c.name:<12} {fmt(c.rows_s, 1):>8} {fmt(c.rows_s / ideal, 3):>7} {fmt(c.cpu_ms_per_row):>11}"
              f" {fmt(c.max_rss_mb, 0):>12} {c.ok:>6} {c.over_cap:>9} {c.requests:>9}")
    figures = {c.name.replace("-", "_") + "_rows_s": fmt(c.rows_s, 1) for c in results}
    figures |= {c.name.replace("-", "_") + "_cpu_ms_per_row": fmt(c.cpu_ms_per_row) for c in results}
    print(result_line("peers", figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--peers", default="openai,curator")
    parser.add_argument("--peer-python", default=os.environ.get("GLM_BENCH_PEER_PYTHON", sys.executable))
    args = parser.parse_args(argv)
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        results = run_peers(args.rows, args.concurrency, args.latency, args.peer_python,
                            args.peers.split(","), Path(tmp))  # fmt: skip
    report(results, args.rows, args.concurrency, args.latency, load)


if __name__ == "__main__":
    main()
