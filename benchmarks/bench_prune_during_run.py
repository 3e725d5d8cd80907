"""`glm-extract journal prune` started while a run uses the same journal: does the run stall?

    .venv/bin/python -m benchmarks.bench_prune_during_run                       # 200,000 old answers
    .venv/bin/python -m benchmarks.bench_prune_during_run --old-rows 20000 --rows 800   # smoke

The journal first holds ``old_rows`` answers paid long ago and ``kept_rows`` paid recently (other
rows' keys: the prune keeps those, so shrinking the file means copying them). A CLI run of ``rows``
tickets at C=``concurrency`` against the emulator (fixed latency) starts on that journal; once a
quarter of its requests have reached the emulator, ``journal prune --before 2021-01-01`` starts in
another process and deletes the old answers. The emulator's request counter is read every 20 ms:
``longest_gap_s`` is the longest time no new request arrived while the run was going (at C/L
requests a second, a healthy run's gap is a few tens of milliseconds). The same run without a
prune gives the baseline. ``prune_s`` is the prune's wall time; its line says whether it shrank.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    REPO,
    checked,
    cli_argv,
    cli_env,
    emulator,
    fmt,
    result_line,
    start_cli,
    wait_cli,
    write_tickets,
)
from emulator.process import EmulatorProcess
from pipeline.journal import Journal, JournalEntry

OLD_PAID_AT = 1_600_000_000.0  # 2020-09-13: before the prune's date
CHUNK = 20_000
POLL_S = 0.02


def fill(path: Path, rows: int, paid_at: float, prefix: str) -> None:
    """``rows`` answers paid at ``paid_at``, under keys no run of this benchmark asks for."""
    with Journal(path) as journal:
        for start in range(0, rows, CHUNK):
            for i in range(start, min(rows, start + CHUNK)):
                data = f'{{"issue_category": "billing", "summary": "{secrets.token_urlsafe(450)}"}}'  # ~1 KB a row
                journal.add(JournalEntry(
                    key=f"{prefix}-{i:08d}", status="ok", final=True, data_json=data, error_code=None,
                    error_message=None, attempts=1, reasks=0, prompt_tokens=900, completion_tokens=200,
                    latency_ms=200.0,
                    finish_reason="stop", model="glm-4-air-250414", request_id=None, task="ticket_qa",
                    schema_id="ticket_qa@bench", paid_at=paid_at), None)  # fmt: skip
            journal.flush()


def longest_gap(emu: EmulatorProcess, running: threading.Event, gaps: list[float]) -> None:
    """Until ``running`` is cleared: the longest time the emulator's request counter stood still."""
    last_count, last_change, longest = -1, time.perf_counter(), 0.0
    while running.is_set():
        count, now = emu.stats()["requests_received"], time.perf_counter()
        if count != last_count:
            if last_count > 0:
                longest = max(longest, now - last_change)
            last_count, last_change = count, now
        time.sleep(POLL_S)
    gaps.append(longest)


@dataclass(frozen=True)
class Figures:
    run_s: float
    gap_s: float
    ok: int
    prune_s: float = float("nan")
    prune_line: str = ""

    def describe(self) -> str:
        prune = f"; prune {fmt(self.prune_s)} s: {self.prune_line}" if self.prune_line else ""
        return f"run {fmt(self.run_s)} s, longest gap {fmt(self.gap_s)} s, ok {self.ok}{prune}"


def one_run(emu: EmulatorProcess, workdir: Path, name: str, rows: int, concurrency: int, journal: Path,
            *, prune: bool) -> Figures:
    source = write_tickets(workdir / f"{name}.parquet", rows, seed=len(name))
    output = workdir / f"{name}.out.parquet"
    emu.reset()
    running, gaps = threading.Event(), list[float]()
    running.set()
    watcher = threading.Thread(target=longest_gap, args=(emu, running, gaps))
    started = time.perf_counter()
    process = start_cli(cli_argv(source, output, emu.base_url, concurrency), cli_env(journal),
                        workdir / f"{name}.log")
    watcher.start()
    prune_s, prune_line = float("nan"), ""
    try:
        if prune:
            while emu.stats()["requests_received"] < rows // 4 and process.poll() is None:
                time.sleep(POLL_S)
            clock = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pipeline.cli", "journal", "prune", "--before", "2021-01-01",
                                   "--journal", str(journal)], cwd=REPO, env=cli_env(journal), capture_output=True,
                                  text=True, check=False)  # fmt: skip
            prune_s = time.perf_counter() - clock
            prune_line = f"exit {done.returncode}: {done.stdout}{done.stderr}".strip()
        run = checked(wait_cli(process, started, output), workdir / f"{name}.log")
    finally:
        running.clear()
        watcher.join()
    return Figures(run.wall_s, gaps[0], int(run.summary["status_counts"]["ok"]), prune_s, prune_line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-rows", type=int, default=200_000)
    parser.add_argument("--kept-rows", type=int, default=200_000, help="answers paid recently (the prune keeps them)")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp, \
            emulator(args.concurrency, f"fixed:{args.latency}") as emu:
        workdir = Path(tmp)
        journal = workdir / "journal.sqlite"
        clock = time.perf_counter()
        fill(journal, args.old_rows, OLD_PAID_AT, "old")
        fill(journal, args.kept_rows, time.time(), "kept")
        size_mb = journal.stat().st_size / 1e6
        print(f"journal: {args.old_rows} old and {args.kept_rows} recent answers, {size_mb:.0f} MB, "
              f"filled in {time.perf_counter() - clock:.1f} s")
        base = one_run(emu, workdir, "baseline", args.rows, args.concurrency, journal, prune=False)
        during = one_run(emu, workdir, "during", args.rows, args.concurrency, journal, prune=True)
    print(f"baseline: {base.describe()}")
    print(f"with prune: {during.describe()}")
    print(result_line("prune_during_run", {
        "old_rows": args.old_rows, "kept_rows": args.kept_rows, "rows": args.rows, "gap_s": fmt(base.gap_s),
        "gap_with_prune_s": fmt(during.gap_s),
        "run_s": fmt(base.run_s), "run_with_prune_s": fmt(during.run_s), "prune_s": fmt(during.prune_s)}))


if __name__ == "__main__":
    main()
