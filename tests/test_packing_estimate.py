"""`glm-extract estimate` for a packing task counts the packed requests and their tokens, and agrees
with what a packed run then reports (within ±15 %)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, serve_in_thread
from pipeline.estimate import ALONE_PRIOR
from pipeline.glm.client import Endpoint
from pipeline.io import summary_path_for
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from tests.conftest import SAMPLE
from tests.packing_support import packing_schemas

TICKETS = SAMPLE / "tickets.parquet"


def _estimate(cwd: Path, schemas: Path, journal: Path) -> dict[str, Any]:
    env = {**os.environ, "GLM_EXTRACT_EMULATOR_PROFILE": "clean"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "estimate", "--task", "ticket_qa", "--input",
                           str(TICKETS), "--json", "--schemas-dir", str(schemas), "--journal", str(journal)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_estimate_counts_packed_requests_and_matches_the_packed_run(tmp_path: Path) -> None:
    packing = packing_schemas(tmp_path, "pack_tokens = 3000\npack_max = 10")
    journal = tmp_path / "journal.sqlite"
    plain = _estimate(tmp_path, packing_schemas(tmp_path, ""), journal)
    packed = _estimate(tmp_path, packing, journal)
    assert plain["requests_after_packing"] == "off (the task sets no pack_tokens)"
    assert packed["requests"] == plain["requests"]  # rows to pay: the same
    assert isinstance(packed["requests_after_packing"], int)
    assert 2 <= packed["requests_after_packing"] <= plain["requests"] // 5
    assert first_prompt(packed) < first_prompt(plain) / 3
    assert packed["cost_cny_cached"] < plain["cost_cny_cached"] / 1.5
    # a packed row asked again alone sends its own (unpacked) request: the prior says how often
    assert f"a prior of {ALONE_PRIOR:.1%} of packed rows asked again alone" in packed["allowance"]["source"]
    assert packed["allowance"]["prompt_tokens"] == round(ALONE_PRIOR * first_prompt(plain))
    settings = Settings(journal_path=journal, schemas_dir=packing, concurrency=8)
    with serve_in_thread(EmulatorConfig()) as emu:
        asyncio.run(run_extraction(RunRequest("ticket_qa", str(TICKETS), tmp_path / "out.parquet"),
                                   settings, Target(Endpoint(emu.base_url), "emulator")))
        assert emu.stats()["requests_received"] == packed["requests_after_packing"]
    summary = json.loads(summary_path_for(tmp_path / "out.parquet").read_text(encoding="utf-8"))
    # the clean emulator never asks a row again: the run matches the estimate without its allowance
    assert summary["requests"]["reasks"] == 0
    assert summary["tokens"]["prompt"] == pytest.approx(first_prompt(packed), rel=0.15)
    actual = summary["tokens"]["prompt"] + summary["tokens"]["completion"]
    first_completion = packed["completion_tokens"] - packed["allowance"]["completion_tokens"]
    assert actual == pytest.approx(first_prompt(packed) + first_completion, rel=0.15)


def first_prompt(found: dict[str, Any]) -> int:
    """The estimate's prompt tokens without its allowance for rows asked again."""
    return int(found["prompt_tokens"] - found["allowance"]["prompt_tokens"])
