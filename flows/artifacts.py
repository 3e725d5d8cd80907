"""What a run leaves on the Prefect UI: summary and error tables, an outputs note, live progress.

Builders are pure (run summary in, table rows or Markdown out); ``publish_*`` send them. Every
artifact has a key ``glm-extract-<task>-<kind>`` so the nightly runs form one versioned series
on the Artifacts page. Nothing here may carry a secret: artifacts are stored on the server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from pipeline.summary import RunSummary
from pipeline.wording import plural

OFFLINE_NOTE = "offline emulator: answers are synthetic"  # any emulator's, bundled or reached by --base-url
MAX_ERROR_ROWS = 20


def artifact_key(task: str, kind: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) for ``task`` and ``kind``."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"glm-extract-{task}-{kind}".lower())
    return slug.strip("-")


def endpoint_line(summary: RunSummary) -> str:
    """Where requests went, loudly marked when the answers are synthetic."""
    where = f"{summary.endpoint} {summary.base_url}"
    return f"{where} ({OFFLINE_NOTE})" if summary.synthetic else where


def summary_rows(summary: RunSummary) -> list[dict[str, str]]:
    """The run summary as metric/value rows."""
    requests, tokens, latency = summary.requests, summary.tokens, summary.latency_ms
    split = summary.cost_split
    pairs: list[tuple[str, Any]] = [
        ("run id", summary.run_id), ("task", summary.task), ("endpoint", endpoint_line(summary)),
        ("limiter", summary.limiter), ("partition date", summary.partition_date), ("rows", summary.rows),
        *((f"rows {status}", count) for status, count in summary.status_counts.items()),
        ("requests sent", requests.sent), ("answered", requests.answered),
        ("from journal (free)", requests.from_journal), ("retries", requests.retries),
        ("rate limited", requests.rate_limited), ("re-asks", requests.reasks),
        ("prompt tokens", tokens.prompt), ("completion tokens", tokens.completion),
        *([("answers without usable usage (tokens by our rule)", tokens.counted_by_rule)]
          if tokens.counted_by_rule else []),
        ("cost (CNY)", f"{summary.cost_cny:.6f}"),
        ("cost: first attempts (CNY)", f"{split.first_attempts:.6f}"), ("cost: retries (CNY)", f"{split.retries:.6f}"),
        ("cost: reasks (CNY)", f"{split.reasks:.6f}"), ("cost: cached tokens (CNY)", f"{split.cached_tokens:.6f}"),
        ("latency p50 (ms)", latency.p50), ("latency p95 (ms)", latency.p95),
        ("rows/s", summary.rows_per_second), ("seconds", summary.seconds),
        ("model", summary.model), ("shards", summary.shards),
    ]
    return [{"metric": name, "value": "" if value is None else str(value)} for name, value in pairs]


def error_rows(summary: RunSummary) -> list[dict[str, str]]:
    """The top error codes with example record ids (one 'none' row when clean)."""
    errors = summary.errors[:MAX_ERROR_ROWS]
    if not errors:
        return [{"code": "none", "rows": "0", "example ids": ""}]
    return [{"code": e.code, "rows": str(e.count), "example ids": ", ".join(e.example_ids)} for e in errors]


def outputs_markdown(summary: RunSummary, *, evaluation: str | None, export: str | None) -> str:
    """Where the outputs went, plus evaluation scores when the input had gold labels."""
    lines = [
        f"# {summary.task} · run `{summary.run_id}`",
        "",
        f"**{OFFLINE_NOTE.upper()}**" if summary.synthetic else f"Endpoint: {endpoint_line(summary)}",
        "",
        f"- input: `{summary.input}`",
        f"- output: `{summary.output}` ({plural(summary.rows, 'row')})",
        f"- summary: `{summary.output}.summary.json`",
        f"- warehouse: {export or 'not exported'}",
        f"- cost: {summary.cost_cny:.6f} CNY ({summary.cost_split.describe()}); limiter: {summary.limiter}",
    ]
    if evaluation:
        lines += ["", "## Evaluation against gold labels", "", evaluation]
    return "\n".join(lines) + "\n"


def estimate_markdown(estimate: Mapping[str, Any]) -> str:
    """The estimate-only report."""
    return "\n".join([
        f"# Estimate for {estimate['task']} (nothing sent, nothing written)",
        "",
        f"- input: `{estimate['input']}` ({estimate['rows']} rows in {estimate['shards']} shards)",
        f"- rows needing a request: {estimate['requests']} "
        f"(already answered in the journal: {estimate['from_journal']}, skipped locally: {estimate['skipped']})",
        f"- prompt tokens ≈ {estimate['prompt_tokens']}, completion tokens ≈ {estimate['completion_tokens']}",
        f"- cost ≈ {estimate['cost_cny']:.4f} CNY at {estimate['price_cny_per_mtok']} CNY per million tokens, "
        "re-asks and runaway answers included",
        f"- with the prefix cache ≈ {estimate.get('cost_cny_cached', 0.0):.4f} CNY "
        f"({estimate.get('cached_tokens', 0)} cached tokens); batch ≈ {estimate.get('cost_cny_batch', 0.0):.4f} CNY",
        *_allowance_lines(estimate),
        f"- calibrated on {estimate.get('calibrated_on', 0)} real answers in the journal",
        "",
    ])


def _allowance_lines(estimate: Mapping[str, Any]) -> list[str]:
    """What the estimate adds for re-asks and runaway answers, and the worst case beside it."""
    lines = []
    allowance, worst = estimate.get("allowance"), estimate.get("worst_case")
    if isinstance(allowance, Mapping):
        lines.append(f"- of which for re-asks and runaway answers: {allowance.get('prompt_tokens', 0)} prompt and "
                     f"{allowance.get('completion_tokens', 0)} completion tokens ({allowance.get('source', '')})")
    if isinstance(worst, Mapping):
        lines.append(f"- worst case ≈ {worst.get('cost_cny', 0.0):.4f} CNY: every answer at max_tokens "
                     f"({worst.get('max_tokens')}), re-asked {worst.get('max_reasks')} times (--budget-cny caps a run)")
    return lines


async def publish_summary(summary: RunSummary, *, evaluation: str | None, export: str | None) -> None:
    """The three end-of-run artifacts: summary table, error table, outputs note."""
    task = summary.task
    await acreate_table_artifact(summary_rows(summary), key=artifact_key(task, "summary"),
                                 description=f"Run summary of {task} ({endpoint_line(summary)})")
    await acreate_table_artifact(error_rows(summary), key=artifact_key(task, "errors"),
                                 description=f"Top error codes of {task} with example record ids")
    await acreate_markdown_artifact(outputs_markdown(summary, evaluation=evaluation, export=export),
                                    key=artifact_key(task, "outputs"), description=f"Outputs of {task}")


async def publish_refusal(task: str, message: str) -> None:
    """Why the run refused to start (bad input, output or task): nothing was sent or written."""
    text = f"## Run refused: nothing was sent, nothing was written\n\n{message}\n"
    await acreate_markdown_artifact(text, key=artifact_key(task, "errors"), description=f"Why {task} did not run")


async def publish_estimate(estimate: Mapping[str, Any]) -> None:
    """The estimate-only report as a Markdown artifact."""
    await acreate_markdown_artifact(estimate_markdown(estimate), key=artifact_key(str(estimate["task"]), "estimate"),
                                    description="Estimate only: rows, requests and expected cost")


class ProgressReport:
    """A progress artifact that moves as shards finish (percent of rows done)."""

    def __init__(self, artifact_id: UUID, total_rows: int) -> None:
        self.artifact_id = artifact_id
        self.total = max(1, total_rows)
        self.done = 0
        self._sending = asyncio.Lock()  # shards finishing together: updates leave (and land) in order

    @classmethod
    async def start(cls, task: str, total_rows: int) -> ProgressReport:
        """Create the artifact at 0 %."""
        artifact_id = await acreate_progress_artifact(0.0, key=artifact_key(task, "progress"),
                                                      description=f"Rows of {task} processed")
        return cls(artifact_id, total_rows)

    async def advance(self, rows: int) -> None:
        """Count ``rows`` more as done and update the artifact in place."""
        async with self._sending:
            self.done += rows
            await aupdate_progress_artifact(self.artifact_id, min(100.0, 100.0 * self.done / self.total))
