"""Run the real pipeline in-process against an emulator (shared by the emulator's outside tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from pipeline.glm.client import Endpoint
from pipeline.limiter import AdaptiveLimiter
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings

#: A schema an outside client would send (no titles, no descriptions), for the schema-agnostic tests.
OUTSIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["customer_name", "refund_amount", "sentiment"],
    "properties": {
        "customer_name": {"type": "string"},
        "refund_amount": {"type": "number", "minimum": 0},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
    },
}

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


def run_pipeline(base_url: str, tmp_path: Path, *, task: str = "ticket_qa", source: Path | None = None,
                 kind: str = "emulator", limiter: AdaptiveLimiter | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, **settings: Any) -> dict[str, Any]:
    """One whole run of ``task`` over ``source`` (default: its bundled sample); returns the summary."""
    source = source or SAMPLE / ("tickets.parquet" if task == "ticket_qa" else "financial_reports.parquet")
    config = Settings(journal_path=tmp_path / "journal.sqlite", schemas_dir=REPO / "schemas",
                      backoff_initial_s=0.01, backoff_max_s=0.05, **settings)
    request = RunRequest(task, str(source), tmp_path / f"{task}.parquet")
    target = Target(Endpoint(base_url), kind)  # type: ignore[arg-type]
    summary = asyncio.run(run_extraction(request, config, target, limiter=limiter, transport=transport))
    return summary.to_dict()  # as written to <output>.summary.json
