"""Item: the emulator's cap is the account tier's, not the client's --concurrency; AIMD adapts to it."""

from __future__ import annotations

import statistics
from pathlib import Path

import httpx
import polars as pl
import pytest

from emulator import EmulatorConfig, LatencySpec, serve_in_thread
from emulator.cli import build_parser, config_from_args
from pipeline.endpoints import resolve_target
from pipeline.limiter import AdaptiveLimiter
from pipeline.platform import TIER_CAPS
from pipeline.settings import Settings
from tests.emulator.support import SAMPLE, run_pipeline

ROWS = 600
LATENCY_S = 0.05


class RecordingLimiter(AdaptiveLimiter):
    """The real limiter, remembering its window after every answer (success or 429) while requests
    queue for a slot: then the window is what holds the client back (in the run's tail there is too
    little work left to meet the cap, and the window may grow freely).

    Time is scaled down with the latency (0.05 s, not seconds): one halving per answer time."""

    def __init__(self, cap: int) -> None:
        super().__init__(cap, cooldown_s=LATENCY_S)
        self.windows: list[float] = []

    def on_success(self) -> None:
        super().on_success()
        self._note()

    def on_rate_limited(self) -> None:
        super().on_rate_limited()
        self._note()

    def _note(self) -> None:
        if self.waiting:
            self.windows.append(self.window)


@pytest.mark.parametrize(("tier", "cap"), sorted(TIER_CAPS.items()))
def test_tier_sets_the_cap_and_concurrency_overrides_it(tier: str, cap: int) -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--tier", tier])).concurrency == cap
    assert config_from_args(parser.parse_args(["--tier", tier, "--concurrency", "7"])).concurrency == 7
    assert TIER_CAPS == {"V0": 30, "V1": 40, "V2": 50, "V3": 60}


def test_the_offline_emulator_is_capped_by_the_tier_not_by_the_clients_concurrency() -> None:
    settings = Settings(concurrency=60, emulator_tier="V0", emulator_profile="clean")
    with resolve_target(settings) as target:
        root = target.endpoint.base_url.removesuffix("/api/paas/v4")
        config = httpx.get(root + "/_emulator/stats", timeout=10).json()["config"]
    assert config["concurrency"] == 30 and config["profile"] == "clean"
    with resolve_target(Settings(concurrency=8, emulator_tier="V3", emulator_profile="realistic")) as target:
        root = target.endpoint.base_url.removesuffix("/api/paas/v4")
        config = httpx.get(root + "/_emulator/stats", timeout=10).json()["config"]
    assert config["concurrency"] == 60 and config["profile"] == "realistic"


def test_a_client_at_60_against_a_cap_of_30_finishes_every_row_and_settles_under_the_cap(tmp_path: Path) -> None:
    base = pl.read_parquet(SAMPLE / "tickets.parquet").filter(pl.col("text").str.strip_chars() != "")
    rows = pl.concat([base.with_columns(pl.col("ticket_id") + f"-{i}", pl.col("text") + f" (note {i})")
                      for i in range(ROWS // base.height + 1)]).head(ROWS)
    source = tmp_path / "many.parquet"
    rows.write_parquet(source)
    limiter = RecordingLimiter(60)
    config = EmulatorConfig(concurrency=30, latency=LatencySpec("fixed", LATENCY_S), seed=2)
    with serve_in_thread(config) as emu:
        summary = run_pipeline(emu.base_url, tmp_path, source=source, concurrency=60, limiter=limiter,
                               max_attempts=20)
        stats = emu.stats()
    assert summary["rows"] == ROWS and summary["status_counts"]["ok"] == ROWS
    assert summary["requests"]["rate_limited"] > 0  # it did meet the account's cap
    assert stats["max_in_flight"] <= 30
    later = limiter.windows[len(limiter.windows) // 2 :]
    assert statistics.median(later) <= 30 and max(later) < 45, later[-20:]
