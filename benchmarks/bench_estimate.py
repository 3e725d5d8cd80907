"""8. The estimate against what the run then pays, split by where the difference comes from.

    .venv/bin/python -m benchmarks.bench_estimate                 # both sample tasks, as `make run` runs them
    .venv/bin/python -m benchmarks.bench_estimate --copies 5      # each sample five times (distinct copies)

For each bundled task over its sample (`data/sample/`), on the emulator's realistic profile (its
fault table and default seed, cap 30: as `make run` at tier V0; latency fixed at 0, which changes no token:
usage is drawn from seed, content and attempt), a fresh journal:

1. `glm-extract estimate`'s figures (:func:`pipeline.commands.estimate.estimate_input`), with and
   without its allowance for re-asks and runaway answers;
2. the run (:func:`pipeline.runner.run_extraction`), every answer's usage recorded at the transport;
3. actual − estimate split into: the answer-size guess (first answers that were not cut), answers
   cut at ``max_tokens`` (runaways: billed at the limit), re-ask prompts and re-ask answers,
   failed attempts (429/500/…: billed nothing), and the first prompts: the emulator counts by
   the same rule, so this is only the prompts of requests never answered (a 1301 refusal is billed
   nothing, the estimate counted them); against GLM it is also the tokenizer's difference.

``--seed N`` draws the faults from another seed (the default is the one `make run` uses);
``--copies K`` repeats each sample K times, each copy's text marked so its key, answer and fault
draws are its own: more requests, so one re-ask or runaway weighs less.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl

from benchmarks.common import REPO, load_average, result_line
from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from pipeline.commands.estimate import estimate_input
from pipeline.endpoints import online_target
from pipeline.runner import RunRequest, run_extraction, transport_for
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from pipeline.tasks import load_task

SAMPLES = {"ticket_qa": "tickets.parquet", "financial_report": "financial_reports.parquet"}
FIRST_MESSAGES = 2  # a first request sends system + user; a re-ask appends the bad answer and a follow-up


@dataclass(frozen=True)
class Usage:
    """One answered request as the endpoint billed it."""

    reask: bool
    prompt: int
    completion: int
    finish: str | None


@dataclass
class UsageTransport(httpx.AsyncBaseTransport):
    """Records the usage of every answer (and counts the attempts that were not answered)."""

    inner: httpx.AsyncBaseTransport
    answers: list[Usage] = field(default_factory=list)
    unanswered: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/chat/completions"):
            return response
        body = await response.aread()
        usage = orjson.loads(body).get("usage") if response.status_code == 200 else None
        if usage is None:
            self.unanswered += 1
        else:
            messages = orjson.loads(request.content)["messages"]
            finish = orjson.loads(body)["choices"][0].get("finish_reason")
            self.answers.append(Usage(len(messages) > FIRST_MESSAGES, usage["prompt_tokens"],
                                      usage["completion_tokens"], finish))
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sample(task: str, copies: int, folder: Path) -> Path:
    """The task's sample, ``copies`` times (each copy's text marked, so its requests are its own)."""
    path = REPO / "data" / "sample" / SAMPLES[task]
    if copies == 1:
        return path
    spec = load_task(task, REPO / "schemas")
    frame = pl.read_parquet(path)
    text, ident = pl.col(spec.text_column), pl.col(spec.id_column)
    rows = pl.concat([frame.with_columns(pl.when(text.str.strip_chars() != "").then(text + f"\n(ref. copy {k})")
                                         .otherwise(text), ident + f"-{k}") for k in range(copies)])
    copied = folder / f"{task}-x{copies}.parquet"
    rows.write_parquet(copied)
    return copied


def measure(task: str, copies: int, seed: int, workdir: Path) -> dict[str, Any]:
    source = sample(task, copies, workdir)
    config = EmulatorConfig.for_profile("realistic", concurrency=30, latency=LatencySpec.parse("fixed:0"), seed=seed)
    with start_emulator(config) as emu:
        settings = Settings(base_url=emu.base_url, concurrency=30, schemas_dir=REPO / "schemas",
                            journal_path=workdir / f"{task}.sqlite")
        found = estimate_input(task, str(source), settings, {}).as_dict()
        usage = UsageTransport(transport_for(settings))
        request = RunRequest(task, str(source), workdir / f"{task}.out.parquet")

        async def go() -> RunSummary:
            async with usage:
                return await run_extraction(request, settings, online_target(settings), transport=usage)

        summary = asyncio.run(go())
    return split(task, found, summary, usage)


def split(task: str, found: dict[str, Any], summary: RunSummary, usage: UsageTransport) -> dict[str, Any]:
    """actual − estimate by component (tokens)."""
    allowance = found["allowance"]
    first_prompt = found["prompt_tokens"] - allowance["prompt_tokens"]
    per_answer = found["completion_per_request"]
    firsts = [u for u in usage.answers if not u.reask]
    cut = [u for u in firsts if u.finish == "length"]
    whole = [u for u in firsts if u.finish != "length"]
    reasks = [u for u in usage.answers if u.reask]
    actual = summary.tokens.prompt + summary.tokens.completion
    before = first_prompt + found["completion_tokens"] - allowance["completion_tokens"]
    after = found["prompt_tokens"] + found["completion_tokens"]
    return {
        "task": task, "requests": found["requests"], "actual": actual, "before": before, "after": after,
        "allowance": allowance["prompt_tokens"] + allowance["completion_tokens"],
        "worst": found["worst_case"]["tokens"],
        "answer_size": sum(u.completion for u in whole) - per_answer * len(whole),
        "runaways": len(cut), "runaway_tokens": sum(u.completion for u in cut) - per_answer * len(cut),
        "reasks": len(reasks), "reask_prompt": sum(u.prompt for u in reasks),
        "reask_completion": sum(u.completion for u in reasks), "unanswered": usage.unanswered,
        "first_prompt_count": sum(u.prompt for u in firsts) - first_prompt,
        "cached_actual": summary.tokens.cached, "cached_estimate": found["cached_tokens"],
    }  # fmt: skip


def report(figures: list[dict[str, Any]], copies: int, seed: int) -> None:
    print(f"estimate vs actual, realistic profile, seed {seed}, sample x{copies} ({load_average()})")
    for f in figures:
        print(f"  {f['task']} ({f['requests']} requests): actual {f['actual']} tokens; estimate without the"
              f" allowance {f['before']} ({error(f['before'], f['actual'])}), with it {f['after']}"
              f" ({error(f['after'], f['actual'])}, allowance {f['allowance']}); worst case {f['worst']}")
        print(f"    actual − estimate without allowance = answer-size guess {f['answer_size']:+.0f}"
              f" + runaways ({f['runaways']}) {f['runaway_tokens']:+.0f} + re-asks ({f['reasks']}) prompt"
              f" {f['reask_prompt']:+} completion {f['reask_completion']:+} + first prompts"
              f" {f['first_prompt_count']:+}; {f['unanswered']} unanswered attempts billed 0;"
              f" cached actual {f['cached_actual']} vs estimate {f['cached_estimate']}")
    print(result_line("estimate", {f"error_{f['task']}": error(f["after"], f["actual"]) for f in figures}
                      | {f"error_before_{f['task']}": error(f["before"], f["actual"]) for f in figures}))


def error(predicted: float, actual: float) -> str:
    return f"{(predicted - actual) / actual:+.4f}" if actual else "nan"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=1, help="repeat each sample this many times")
    parser.add_argument("--tasks", default=",".join(SAMPLES), help="comma-separated bundled tasks")
    parser.add_argument("--seed", type=int, default=EmulatorConfig().seed, help="emulator seed (default: make run's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        figures = [measure(task, args.copies, args.seed, Path(tmp)) for task in args.tasks.split(",")]
    report(figures, args.copies, args.seed)


if __name__ == "__main__":
    main()
