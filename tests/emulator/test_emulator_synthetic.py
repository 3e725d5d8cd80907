"""Item: synthetic answers never pass as real, whatever URL the emulator was reached by."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from emulator import EmulatorConfig, LatencySpec, start_emulator
from emulator.process import EmulatorProcess
from pipeline.glm.client import Endpoint, GLMClient
from tests.emulator.support import REPO, SAMPLE, run_pipeline

BODY = {"model": "glm-4-air-250414", "messages": [{"role": "user", "content": "hello"}]}


def _real_glm_answer(request: httpx.Request) -> httpx.Response:
    """A stand-in for GLM itself: a well-formed answer without the emulator's header."""
    answer = {"summary": "real", "issue_category": "other"}
    body = {"id": "1", "request_id": "r", "created": 1, "model": "glm-4-air-250414",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answer)}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}  # fmt: skip
    return httpx.Response(200, content=orjson.dumps(body), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def standalone() -> Iterator[EmulatorProcess]:
    with start_emulator(EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.005"), seed=4)) as emu:
        yield emu


def test_the_client_recognises_the_header_on_any_endpoint(standalone: EmulatorProcess) -> None:
    async def ask(transport: httpx.AsyncBaseTransport, url: str) -> bool:
        async with transport:
            return (await GLMClient(transport, Endpoint(url)).chat(BODY)).synthetic

    assert asyncio.run(ask(httpx.AsyncHTTPTransport(), standalone.base_url)) is True
    assert asyncio.run(ask(httpx.MockTransport(_real_glm_answer), "https://glm.invalid/api/paas/v4")) is False


def test_a_run_through_base_url_says_synthetic_and_a_later_real_run_never_reuses_it(
    tmp_path: Path, standalone: EmulatorProcess
) -> None:
    """Even without the start-of-run probe (library use), synthetic answers are not journaled as real."""
    first = run_pipeline(standalone.base_url, tmp_path, kind="custom", concurrency=8)
    assert first["synthetic"] is True and first["endpoint"] == "custom"
    assert first["status_counts"]["ok"] > 0
    real = run_pipeline("https://glm.invalid/api/paas/v4", tmp_path, kind="glm", concurrency=8,
                        transport=httpx.MockTransport(_real_glm_answer))
    assert real["requests"]["from_journal"] <= 1  # only the sample's one duplicate text
    assert real["requests"]["answered"] > 0 and real["synthetic"] is False


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def test_the_cli_with_base_url_keys_labels_and_resumes_synthetic_answers(
    tmp_path: Path, standalone: EmulatorProcess
) -> None:
    env = {**os.environ, "GLM_EXTRACT_JOURNAL_PATH": str(tmp_path / "journal.sqlite"), "NO_COLOR": "1",
           "COLUMNS": "200"}
    output = tmp_path / "out.parquet"
    argv = ("run", "--task", "ticket_qa", "--input", str(SAMPLE / "tickets.parquet"), "--output", str(output),
            "--base-url", standalone.base_url, "--concurrency", "8", "--quiet")
    done = _cli(*argv, env=env)
    assert done.returncode == 0, done.stderr
    assert "synthetic" in done.stdout
    summary = json.loads(Path(f"{output}.summary.json").read_text())
    assert summary["synthetic"] is True and summary["offline_emulator"] is False
    standalone.reset()
    again = _cli(*argv, env=env)
    assert again.returncode == 0, again.stderr
    assert standalone.stats()["requests_received"] == 0  # resumed from the journal, under synthetic keys
