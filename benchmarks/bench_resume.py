"""4. Resume cost: restart time on a big journal, and requests paid twice after ``kill -9``.

    .venv/bin/python -m benchmarks.bench_resume                          # journal of 1,000,000 rows
    .venv/bin/python -m benchmarks.bench_resume --journal-rows 2000 --kill-rows 600   # smoke

Restart: the input is ``journal_rows`` rows whose answers the journal already holds (written
through the pipeline's own render/key functions and ``Journal``, so the keys are the ones a run
computes), followed by ``new_rows`` rows it does not know. A resumed run must skip the known rows
(render, key, journal lookup, table assembly) before its first request; the time from process start
to the first request the emulator sees is the restart cost. A 10-row run on an empty journal gives
the fixed start-up cost to compare with.

Kill: a run of ``kill_rows`` rows at C=50 and 0.2 s latency is ``kill -9``-ed once about a third of
its requests reached the emulator. The emulator's in-flight gauge just before the kill says how many
requests were on the wire. The same command is then run again to the end on the same journal; with
no faults every row needs exactly one request, so requests sent by both runs together minus the
rows is the number paid twice. D4's promise: at most the requests in flight at the kill. "In flight"
is the server's view (received, never answered); answers the server sent that the client had not yet
read and committed when it died are counted apart (a stalled event loop makes that number grow).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

from benchmarks.common import (
    checked,
    cli_argv,
    cli_env,
    emulator,
    fmt,
    kill_hard,
    make_tickets,
    result_line,
    run_child,
    start_cli,
    ticket_prompt,
    wait_cli,
    write_tickets,
)
from emulator.answers import answer_request
from emulator.process import EmulatorProcess
from pipeline.journal import Journal, JournalEntry
from pipeline.keys import SYNTHETIC_ENDPOINT, request_key

CHUNK = 50_000


def fill_journal(frame: pl.DataFrame, path: Path) -> None:
    """Journal an ``ok`` answer for every row of ``frame``, keyed exactly as a run keys it."""
    prompt = ticket_prompt()
    task, model = prompt.task, prompt.options.model
    data_json = answer_request(prompt.render(prompt.rows(frame.head(1))[0])).text  # one valid answer, reused
    with Journal(path) as journal:
        for start in range(0, frame.height, CHUNK):
            for row in prompt.rows(frame.slice(start, CHUNK)):
                key = request_key(prompt.render(row), SYNTHETIC_ENDPOINT)  # the run's key against an emulator
                journal.add(JournalEntry(
                    key=key, status="ok", final=True, data_json=data_json, error_code=None, error_message=None,
                    attempts=1, reasks=0, prompt_tokens=900, completion_tokens=200, latency_ms=200.0,
                    finish_reason="stop", model=model, request_id=None, task=task.name,
                    schema_id=task.schema_id), None)  # fmt: skip
            journal.flush()


def time_to_first_request(emu: EmulatorProcess, source: Path, output: Path,
                          journal: Path) -> tuple[float, float, float]:
    """(seconds from process start to the emulator's first request, whole run's seconds, peak RSS MB)."""
    emu.reset()
    started = time.perf_counter()
    process = start_cli(cli_argv(source, output, emu.base_url, 50), cli_env(journal), output.with_suffix(".log"))
    first: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not first:
            if emu.stats()["requests_received"] > 0:
                first.append(time.perf_counter() - started)
            else:
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = checked(wait_cli(process, started, output), output.with_suffix(".log"))
    finally:
        done.set()
        watcher.join()
    return (first[0] if first else float("nan")), run.wall_s, run.max_rss_mb


def measure_restart(journal_rows: int, new_rows: int, workdir: Path, baseline: bool = True) -> dict[str, float]:
    frame = make_tickets(journal_rows + new_rows)
    source = workdir / "resume.parquet"
    frame.write_parquet(source, row_group_size=100_000)
    journal = workdir / "resume.sqlite"
    clock = time.perf_counter()
    fill_journal(frame.head(journal_rows), journal)
    fill_s = time.perf_counter() - clock
    del frame
    small = write_tickets(workdir / "fresh.parquet", 10, seed=99)
    with emulator(50, "fixed:0") as emu:
        fresh_first = float("nan")
        if baseline:
            fresh = workdir / "fresh.out.parquet"
            fresh_first, _, _ = time_to_first_request(emu, small, fresh, workdir / "fresh.sqlite")
        first, wall, rss = time_to_first_request(emu, source, workdir / "resume.out.parquet", journal)
        sent = emu.stats()["requests_received"]
    return {"journal_rows": journal_rows, "new_rows": new_rows, "fill_s": fill_s, "first_request_s": first,
            "fresh_first_request_s": fresh_first, "skip_us_per_row": 1e6 * (first - fresh_first) / journal_rows,
            "wall_s": wall, "sent": sent, "max_rss_mb": rss}  # fmt: skip


def measure_kill(rows: int, workdir: Path, concurrency: int = 50, latency: float = 0.2) -> dict[str, float]:
    source = write_tickets(workdir / "kill.parquet", rows, seed=11)
    journal, output = workdir / "kill.sqlite", workdir / "kill.out.parquet"
    argv = cli_argv(source, output, "", concurrency)
    with emulator(concurrency, f"fixed:{latency}") as emu:
        argv[argv.index("--base-url") + 1] = emu.base_url
        started = time.perf_counter()
        process = start_cli(argv, cli_env(journal), workdir / "kill.log")
        stats = emu.stats()
        while stats["requests_received"] < rows // 3 and process.poll() is None:
            time.sleep(0.05)
            stats = emu.stats()
        gauge = stats["in_flight"]
        kill_hard(process)
        wait_cli(process, started, output)
        time.sleep(0.5)  # the emulator cancels the handlers of the dead connections
        after = emu.stats()
        first_sent = after["requests_received"]
        in_flight = first_sent - after["completed_ok"]  # received, never answered: on the wire at the kill
        with Journal(journal) as j:
            journaled = j.count()
        emu.reset()
        rerun = run_child(argv, cli_env(journal), workdir / "kill2.log", output)
        second_sent = emu.stats()["requests_received"]
    return {"rows": rows, "sent_before_kill": first_sent, "in_flight_at_kill": in_flight, "gauge": gauge,
            "journaled": journaled,
            "sent_after": second_sent, "repeated": first_sent + second_sent - rows,
            "from_journal": rerun.summary["requests"]["from_journal"]}  # fmt: skip


def report(restart: dict[str, float], kill: dict[str, float]) -> None:
    print(f"resume: restart on a journal of {restart['journal_rows']:,} answered rows"
          f" (+{restart['new_rows']:,} new rows after them; journal filled in {fmt(restart['fill_s'], 0)} s)")
    print(f"  time to first new request   {fmt(restart['first_request_s'], 2)} s"
          f"  (empty journal, 10 rows: {fmt(restart['fresh_first_request_s'], 2)} s;"
          f" skipping costs {fmt(restart['skip_us_per_row'], 1)} µs per journaled row)")
    print(f"  whole resumed run           {fmt(restart['wall_s'], 1)} s, {restart['sent']} requests sent,"
          f" peak RSS {fmt(restart['max_rss_mb'], 0)} MB")
    print(f"kill -9 after {kill['sent_before_kill']} of {kill['rows']} requests (C=50, 0.2 s):"
          f" {kill['in_flight_at_kill']} in flight (received, never answered; gauge read just before the kill:"
          f" {kill['gauge']}), {kill['journaled']} journaled")
    lost = kill["sent_before_kill"] - kill["in_flight_at_kill"] - kill["journaled"]
    print(f"  rerun sent {kill['sent_after']}, answered {kill['from_journal']} from the journal;"
          f" requests paid twice: {kill['repeated']} (in flight at the kill: {kill['in_flight_at_kill']};"
          f" answered by the server but not yet read and committed by the client: {lost})")
    print(result_line("resume", {"first_request_s": fmt(restart["first_request_s"], 2),
                                 "journal_rows": restart["journal_rows"],
                                 "resume_repeats": f"{kill['repeated']}/{kill['in_flight_at_kill']}"}))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journal-rows", type=int, default=1_000_000)
    parser.add_argument("--new-rows", type=int, default=1000)
    parser.add_argument("--kill-rows", type=int, default=3000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the empty-journal start-up run (smoke)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        kill = measure_kill(args.kill_rows, Path(tmp))
        restart = measure_restart(args.journal_rows, args.new_rows, Path(tmp), baseline=not args.no_baseline)
        report(restart, kill)


if __name__ == "__main__":
    main()
