"""Shared pieces of the benchmarks: synthetic ticket inputs, the emulator, and the CLI as a measured child.

The pipeline always runs as ``python -m pipeline.cli run …`` in a child process, so its CPU time
comes from the kernel (``os.wait4`` rusage) and its peak RSS from its own ``VmHWM`` (see
``wait_cli``). The emulator runs in its own process too; its CPU is read from ``/proc/<pid>/stat``
before and after, so every benchmark can show that the emulator was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import polars as pl

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorProcess, start_emulator
from pipeline.engine import rows_of
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec, load_task

REPO = Path(__file__).resolve().parents[1]
TASK = "ticket_qa"
_TICKS = os.sysconf("SC_CLK_TCK")

_OPENERS = (
    "Hi, I was charged twice for order",
    "Hello, my parcel for order",
    "我的订单",
    "The app keeps crashing when I open order",
    "I want a refund for order",
    "Can you tell me when order",
    "Good morning. The invoice for order",
    "您好，订单",
)
_DETAILS = (
    "shows two charges of $59.99 on my Visa ending 4821. Please refund the duplicate.",
    "has not arrived after 12 days and the tracking page has not moved since Monday.",
    "一直没有发货，已经等了一个星期了，请尽快处理，不然我要投诉。",
    "and I lose everything I typed. This is the third time this week, really annoying.",
    "because the blender arrived broken; the box was crushed and the jar is cracked.",
    "will ship? I need it before the 14th for a birthday, otherwise please cancel it.",
    "lists the wrong company name and VAT number; our finance team cannot book it.",
    "里面的耳机只有一只能用，想换货或者退款 199.00 元。",
)
_REPLIES = (
    "Agent: Thanks for reaching out, I am sorry about that. I have reversed the second charge.",
    "Agent: I understand the frustration. I opened a claim with the carrier; update in 48 hours.",
    "客服：非常抱歉给您带来不便，我们已经为您加急处理，预计明天发出。",
    "Agent: Could you confirm the email on the account so I can check the crash logs?",
    "Agent: I have arranged a free replacement and a prepaid return label by email.",
    "客服：您好，已为您登记换货申请，快递员会在两天内上门取件。",
)


def make_tickets(rows: int, seed: int = 7) -> pl.DataFrame:
    """``rows`` ticket-like rows (ticket_id, channel, text of ~150–300 chars), built column-wise (fast at 1M)."""
    index = pl.int_range(0, rows, eager=True).alias("i")
    mixed = index.hash(seed)
    frame = pl.DataFrame({"i": index, "h": mixed})

    def pick(options: tuple[str, ...], shift: int) -> pl.Expr:
        return pl.lit(pl.Series(options)).gather((pl.col("h") // (8**shift)) % len(options))

    ref = (pl.col("h") % 1_000_000).cast(pl.Utf8).str.zfill(6)
    text = pl.concat_str(
        pl.lit("Customer: "), pick(_OPENERS, 1), pl.lit(" A"), ref, pl.lit("-"), pl.col("i").cast(pl.Utf8),
        pl.lit(" "), pick(_DETAILS, 2), pl.lit("\n"), pick(_REPLIES, 3),
        pl.lit("\nCustomer: ok, my email is user"), pl.col("i").cast(pl.Utf8), pl.lit("@example.com"),
    )  # fmt: skip
    return frame.select(
        pl.concat_str(pl.lit("t-"), pl.col("i").cast(pl.Utf8).str.zfill(8)).alias("ticket_id"),
        pick(("email", "chat", "phone", "app"), 4).alias("channel"),
        text.alias("text"),
    )


def write_tickets(path: Path, rows: int, seed: int = 7, chunk: int = 250_000) -> Path:
    """Write ``rows`` synthetic tickets to ``path`` (row groups of ≤ 100k rows so shards stream)."""
    if rows <= chunk:
        make_tickets(rows, seed).write_parquet(path, row_group_size=100_000)
        return path
    frames = [make_tickets(min(chunk, rows - start), seed + start).with_columns(
        pl.concat_str(pl.lit("t-"), (pl.col("ticket_id").str.slice(2).cast(pl.Int64) + start)
                      .cast(pl.Utf8).str.zfill(8)).alias("ticket_id"))
        for start in range(0, rows, chunk)]  # fmt: skip
    pl.concat(frames).write_parquet(path, row_group_size=100_000)
    return path


@contextmanager
def emulator(concurrency: int, latency: str, seed: int = 7, *, profile: str = "clean",
             latency_scale: float = 1.0) -> Iterator[EmulatorProcess]:
    """The emulator subprocess with cap ``concurrency`` and latency spec ``latency`` (e.g. ``fixed:0.2``,
    ``realistic``), in behaviour ``profile`` (``clean``: no faults; ``realistic``: its documented faults)."""
    config = EmulatorConfig.for_profile(profile, concurrency=concurrency, latency=LatencySpec.parse(latency),
                                        seed=seed, latency_scale=latency_scale)
    with start_emulator(config) as emu:
        yield emu


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass(frozen=True)
class CliRun:
    """One measured ``glm-extract run`` child."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    returncode: int
    summary: dict[str, Any]

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def cli_env(journal: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI child: no key, our journal, absolute schemas dir."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GLM_EXTRACT_") and k not in ("ZHIPUAI_API_KEY",)}  # fmt: skip
    env["GLM_EXTRACT_JOURNAL_PATH"] = str(journal)
    env["GLM_EXTRACT_SCHEMAS_DIR"] = str(REPO / "schemas")
    env.update(extra or {})
    return env


def cli_argv(source: Path, output: Path, base_url: str, concurrency: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--task", TASK, "--input", str(source),
            "--output", str(output), "--base-url", base_url, "--concurrency", str(concurrency),
            "-q", *extra]  # fmt: skip


def start_cli(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)


def wait_cli(process: subprocess.Popen[bytes], started: float, output: Path) -> CliRun:
    """Wait for the child: its peak RSS from ``/proc``, then reap it with ``os.wait4`` (its own CPU).

    Not ``ru_maxrss``: Linux carries the high-water mark across ``exec`` from the memory the child
    started with — after ``fork``/``vfork`` that is the *parent's* — so a benchmark holding a 1M-row
    frame made every child look as big as that frame. ``VmHWM`` belongs to the child's own address space; it
    only grows, so the last reading before the exit is the peak (polled every 20 ms)."""
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, proc_status_kb(process.pid, "VmHWM") or 0)
        exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if exited is not None:
            break
        time.sleep(0.02)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    summary_path = output.with_name(output.name + ".summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    peak_mb = peak_kb / 1024 if peak_kb else usage.ru_maxrss / 1024  # a child too quick to read
    return CliRun(wall, usage.ru_utime, usage.ru_stime, peak_mb, process.returncode, summary)


def proc_status_kb(pid: int, field: str) -> int | None:
    """A kB field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def checked(run: CliRun, log: Path) -> CliRun:
    """``run`` if it exited 0; else raise with the tail of its log."""
    if run.returncode != 0:
        raise RuntimeError(f"{log.stem} exited {run.returncode}: {log.read_text()[-2000:]}")
    return run


def run_child(argv: list[str], env: dict[str, str], log: Path, output: Path) -> CliRun:
    """Run a child (the CLI or a peer) to completion and measure it; raise if it failed."""
    started = time.perf_counter()
    return checked(wait_cli(start_cli(argv, env, log), started, output), log)


def run_cli(source: Path, output: Path, base_url: str, concurrency: int, journal: Path,
            env: dict[str, str] | None = None) -> CliRun:
    """Run the CLI to completion and measure it (``env``: extra variables, e.g. a setting)."""
    argv = cli_argv(source, output, base_url, concurrency)
    return run_child(argv, cli_env(journal, env), output.with_suffix(".log"), output)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child (the resume benchmark's crash)."""
    os.kill(process.pid, signal.SIGKILL)


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def result_line(name: str, figures: dict[str, object]) -> str:
    """The machine-readable last line of a benchmark: ``RESULT <name> k=v …`` (run_all collects these)."""
    return f"RESULT {name} " + " ".join(f"{k}={v}" for k, v in figures.items())


@dataclass(frozen=True)
class Prompt:
    """The benchmark task as a run with default settings renders it."""

    task: TaskSpec
    options: RenderOptions
    system: str

    def render(self, row: dict[str, Any]) -> dict[str, Any]:
        return render_request(self.task, row, self.options, self.system)

    def rows(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        return rows_of(frame, self.task)


def ticket_prompt() -> Prompt:
    task = load_task(TASK, REPO / "schemas")
    defaults = Settings()
    options = RenderOptions(model=defaults.model, mode=defaults.mode, max_tokens=defaults.max_tokens)
    return Prompt(task, options, system_message(task, options.mode))


def render_bodies(frame: pl.DataFrame) -> list[bytes]:
    """The request bodies a run would send for ``frame`` (the pipeline's own render), as JSON bytes."""
    prompt = ticket_prompt()
    return [orjson.dumps(prompt.render(row)) for row in prompt.rows(frame)]


@dataclass(frozen=True)
class Reference:
    """The floor: a bare aiohttp client sending the same bodies through a semaphore."""

    rows_s: float
    cpu_ms_per_row: float
    p50_ms: float


async def gated(send: Callable[[bytes], Awaitable[None]], bodies: list[bytes], concurrency: int) -> None:
    """``send`` every body, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(body: bytes) -> None:
        async with gate:
            await send(body)

    await asyncio.gather(*(one(body) for body in bodies))


def raw_reference(base_url: str, bodies: list[bytes], concurrency: int) -> Reference:
    """Send ``bodies`` with raw aiohttp at ``concurrency`` in flight; no retries, parse with orjson only."""
    latencies: list[float] = []

    async def send_all() -> None:
        headers = {"Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=concurrency + 8)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(body: bytes) -> None:
                sent = time.perf_counter()
                async with session.post(base_url + "/chat/completions", data=body, headers=headers) as response:
                    orjson.loads(await response.read())
                latencies.append(time.perf_counter() - sent)

            await gated(send, bodies, concurrency)

    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(send_all())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    return Reference(len(bodies) / wall, 1000 * cpu / len(bodies), 1000 * latencies[len(latencies) // 2])


def load_average() -> str:
    """The 1-minute load average and the core count: other work on the machine skews wall-clock figures."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
