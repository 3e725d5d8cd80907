"""Shared pieces of the reliability suite: inputs, the CLI as a subprocess, journal and table probes.

Everything here runs the real CLI (``python -m pipeline.cli``) against the real emulator process,
so what is tested is what a user runs. Inputs are generated into the test's tmp dir; nothing is
written into the repository.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"

#: Output columns that legitimately differ between two runs of the same input.
VOLATILE_COLUMNS = ("_run_id", "_request_id", "_latency_ms", "_from_journal", "_attempts", "_reasks",
                    "_prompt_tokens", "_completion_tokens", "_cost_cny")

#: Retry and timeout knobs that make faults cheap to wait out (hangs time out after 1 s).
FAST_ENV = {
    "GLM_EXTRACT_BACKOFF_INITIAL_S": "0.01",
    "GLM_EXTRACT_BACKOFF_MAX_S": "0.05",
    "GLM_EXTRACT_READ_TIMEOUT_S": "1",
    "GLM_EXTRACT_CONNECT_TIMEOUT_S": "2",
    "GLM_EXTRACT_MAX_ATTEMPTS": "10",
}

#: Never inherited by a CLI subprocess (nor any GLM_EXTRACT_*): a real key or endpoint must not leak in.
_SCRUBBED = frozenset({"ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY", "GLM_EXTRACT_BASE_URL", "PREFECT_API_URL"})

_OPENINGS = (
    "Customer: Hi, I was charged twice for order {oid} (¥{amount}). Please refund the duplicate.",
    "Customer: My parcel with tracking {oid} has not arrived after {n} days, where is it?",
    "客户：你好，我的订单{oid}一直没有发货，已经等了{n}天了。",
    "Customer: I cannot log into account {oid}; the reset email never comes to user{n}@example.com.",
    "客户：我想取消预订{oid}，能退款{amount}元吗？",
    "Customer: The blender I bought (order {oid}) stopped working after {n} uses.",
)
_REPLIES = (
    "Agent: Hello, thanks for reaching out. I have verified the order and issued a refund. Anything else?",
    "客服：您好，已为您核实，工单已升级给专员处理，请耐心等待。",
    "Agent: Sorry about that. I have escalated this to the logistics team; expect news within {n} hours.",
    "Agent: I reset the account; please try again. Have a nice day!",
)


def ticket_text(i: int) -> str:
    """A distinct, realistic-looking ticket conversation for row ``i`` (every row's key differs)."""
    values = {"oid": f"ORD-{100000 + i * 7}", "amount": f"{(i * 37) % 5000 + 10}.00", "n": i % 30 + 1}
    opening = _OPENINGS[i % len(_OPENINGS)].format(**values)
    reply = _REPLIES[(i // len(_OPENINGS)) % len(_REPLIES)].format(**values)
    return f"{opening}\n{reply}\nCustomer: Thanks. (ref {i})"


def ticket_frame(n: int, *, start: int = 0, texts: Sequence[str | None] | None = None) -> pl.DataFrame:
    """``n`` ticket_qa rows: ``ticket_id`` ``t-<i>``, a channel, and a distinct text."""
    ids = [f"t-{i:06d}" for i in range(start, start + n)]
    body = list(texts) if texts is not None else [ticket_text(i) for i in range(start, start + n)]
    channels = [("chat", "email", "phone")[i % 3] for i in range(start, start + n)]
    return pl.DataFrame({"ticket_id": ids, "channel": channels, "text": body},
                        schema={"ticket_id": pl.String, "channel": pl.String, "text": pl.String})


def write_tickets(path: Path, n: int, **kwargs: Any) -> Path:
    ticket_frame(n, **kwargs).write_parquet(path)
    return path


def cli_env(journal: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: the test's env (isolated by conftest) + fast knobs."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("GLM_EXTRACT_")}
    env.update(FAST_ENV)
    env.update({"GLM_EXTRACT_JOURNAL_PATH": str(journal), "GLM_EXTRACT_SCHEMAS_DIR": str(SCHEMAS)})
    env.update(extra)
    return env


def run_argv(input_path: Path | str, output: Path, base_url: str | None, concurrency: int,
             *extra: str, task: str = "ticket_qa") -> list[str]:
    argv = [sys.executable, "-m", "pipeline.cli", "run", "--task", task, "--input", str(input_path),
            "--output", str(output), "--concurrency", str(concurrency), "-q", *extra]
    if base_url is not None:
        argv += ["--base-url", base_url]
    return argv


def run_cli(argv: Sequence[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
                          check=False)


def summary_of(output: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(output.with_name(output.name + ".summary.json").read_text())
    return result


def journal_count(path: Path, *, final_only: bool = True) -> int:
    """Rows committed to the journal, read without taking a write lock (0 before it exists)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        where = " WHERE final = 1" if final_only else ""
        return int(db.execute(f"SELECT count(*) FROM results{where}").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        db.close()


def journal_integrity(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """The table without the columns that legitimately differ between runs."""
    return frame.drop([c for c in VOLATILE_COLUMNS if c in frame.columns])


def leftovers(folder: Path, output: Path) -> list[str]:
    """Hidden parts folders or temp files a run left next to its output."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{output.name}."))


def one_error_line(stderr: str) -> str:
    """The single non-empty stderr line of a refused run (fails if there are more)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr!r}"
    return lines[0]
