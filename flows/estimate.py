"""Estimate-only runs: how many requests a run would send and what they would cost, sending nothing.

The same estimate as ``glm-extract estimate`` (:func:`pipeline.commands.estimate.estimate_shards`):
rows are rendered exactly as the engine renders them, so the content keys match the journal's and
an answer already paid for is counted as free; tokens by the platform's rule of thumb, calibrated
on the journal's real answers when it holds some (docs/performance.md, cost).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline import io
from pipeline.commands.estimate import estimate_shards
from pipeline.estimate import Estimate
from pipeline.runner import PreparedRun
from pipeline.settings import Settings


def estimate_run(prepared: PreparedRun, settings: Settings, shards: Sequence[io.ShardSpec]) -> Estimate:
    """Render every row shard by shard; count requests, journal hits, tokens and CNY."""
    return estimate_shards(prepared.task, prepared.request.input, settings, shards)
