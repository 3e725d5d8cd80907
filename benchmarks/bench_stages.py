"""Per-stage CPU of the pipeline's pure and local steps, in µs per row, without a network or a profiler.

    .venv/bin/python -m benchmarks.bench_stages --rows 5000

Not part of ``make bench``: it splits bench_overhead's CPU per row into its stages so a fix can be
aimed (and checked) at one of them. Each stage runs the pipeline's own function over ``rows`` rows:
render + key (``plan_row``), answer parse + validation (``judge``), journal add + flush (batched as a
run batches it: a few entries per commit, and one commit per shard), table assembly and part write,
and one HTTP request's client-side cost (``httpx.AsyncClient.build_request`` with a ``str`` URL, as
``GLMClient`` passes it, and with a pre-parsed ``httpx.URL``).
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import polars as pl

from benchmarks.common import make_tickets, ticket_prompt
from emulator.answers import answer_request
from pipeline.journal import Journal, JournalEntry
from pipeline.keys import request_key
from pipeline.tables import RowMeta, RunColumns, assemble_shard, extraction_dtype
from pipeline.tasks import TaskSpec
from pipeline.validate import compile_validator, judge


def per_row_us(action: Callable[[], object], rows: int) -> float:
    started = time.process_time()
    action()
    return 1e6 * (time.process_time() - started) / rows


def measure_stages(rows: int, workdir: Path) -> dict[str, float]:
    prompt = ticket_prompt()
    task = prompt.task
    frame = make_tickets(rows)
    dicts = prompt.rows(frame)
    bodies = [prompt.render(row) for row in dicts[:50]]
    answers = [answer_request(body).text for body in bodies]
    validator = compile_validator(task.schema)
    entries = [_entry(i, answers[i % 50], task.name) for i in range(rows)]
    figures = {
        "rows_of (frame -> dicts)": per_row_us(lambda: prompt.rows(frame), rows),
        "render + key": per_row_us(lambda: [request_key(prompt.render(r)) for r in dicts], rows),
        "judge (parse + validate)": per_row_us(lambda: [judge(answers[i % 50], "stop", validator)
                                                        for i in range(rows)], rows),
        "dataclasses.astuple(entry)": per_row_us(lambda: [dataclasses.astuple(e) for e in entries], rows),
        "attrgetter(entry fields)": per_row_us(lambda: [_FIELDS(e) for e in entries], rows),
        "journal flush, 4 per commit": per_row_us(lambda: _journal(workdir / "j4.sqlite", entries, 4), rows),
        "journal flush, 1000 per commit": per_row_us(lambda: _journal(workdir / "j1k.sqlite", entries, 1000), rows),
        "assemble shard + write part": per_row_us(lambda: _assemble(frame, task, entries, workdir), rows),
    }
    figures |= _http_build(rows)
    return figures


_FIELDS = operator.attrgetter(*JournalEntry.__dataclass_fields__)


def _entry(i: int, answer: str, task: str) -> JournalEntry:
    return JournalEntry(key=f"sha256:{i:064x}", status="ok", final=True, data_json=answer, error_code=None,
                        error_message=None, attempts=1, reasks=0, prompt_tokens=900, completion_tokens=200,
                        latency_ms=200.0, finish_reason="stop", model="glm-4-air-250414", request_id="0" * 32,
                        task=task, schema_id="sha256:" + "0" * 64)  # fmt: skip


def _journal(path: Path, entries: list[JournalEntry], batch: int) -> None:
    raw = orjson.dumps({"choices": [{"message": {"content": entries[0].data_json}}]})
    with Journal(path) as journal:
        for start in range(0, len(entries), batch):
            for entry in entries[start : start + batch]:
                journal.add(entry, raw)
            journal.flush()


def _assemble(frame: pl.DataFrame, spec: TaskSpec, entries: list[JournalEntry], workdir: Path) -> None:
    dtype = extraction_dtype(spec.schema)
    run = RunColumns(spec.name, spec.schema_id, spec.prompt_version, "bench")
    for start in range(0, frame.height, 1000):
        part = frame.slice(start, 1000)
        metas = [RowMeta(status="ok", error_code=None, error_message=None, attempts=1, reasks=0, prompt_tokens=900,
                         completion_tokens=200, cost_cny=0.0, latency_ms=200.0, finish_reason="stop", model="m",
                         request_id="r", key=e.key, from_journal=False, data_json=e.data_json)
                 for e in entries[start : start + part.height]]  # fmt: skip
        assemble_shard(part, spec.id_column, metas, dtype, run).write_parquet(workdir / f"part-{start}.parquet")


def _http_build(rows: int) -> dict[str, float]:
    client = httpx.AsyncClient()
    text = "http://127.0.0.1:8000/api/paas/v4/chat/completions"
    parsed = httpx.URL(text)
    headers = {"Content-Type": "application/json"}
    payload = b"{}"
    built = httpx.Headers(headers)
    return {
        "httpx.AsyncClient.build_request": per_row_us(
            lambda: [client.build_request("POST", text, content=payload, headers=headers) for _ in range(rows)], rows),
        "httpx.Request (what GLMClient does)": per_row_us(
            lambda: [httpx.Request("POST", parsed, content=payload, headers=built) for _ in range(rows)], rows),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        figures = measure_stages(args.rows, Path(tmp))
    print(f"stage CPU, {args.rows} rows (µs per row, process CPU time)")
    for name, value in figures.items():
        print(f"  {name:<34} {value:8.1f}")


if __name__ == "__main__":
    main()
