"""`glm-extract estimate` as a user runs it: from outside the repository, on the sample, against the
journal a run leaves behind, and calibrated on answers from a real (non-emulator) endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from emulator.answers import answer_request
from pipeline.tokens import count_prompt_tokens
from tests.conftest import SAMPLE
from tests.fakes import serve_glm

TICKETS = SAMPLE / "tickets.parquet"
CLI = [sys.executable, "-m", "pipeline.cli"]


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "GLM_EXTRACT_EMULATOR_PROFILE": "clean", **env}
    return subprocess.run([*CLI, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def estimate_json(cwd: Path, *args: str) -> dict[str, Any]:
    done = cli(["estimate", "--task", "ticket_qa", "--input", str(TICKETS), "--json", *args], cwd)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def distinct_requests(frame: pl.DataFrame) -> int:
    sent = frame.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
    return sent.select("channel", "text").unique().height


def test_estimate_reports_rows_requests_tokens_and_prices_and_writes_nothing(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    found = estimate_json(tmp_path, "--journal", str(journal))
    frame = pl.read_parquet(TICKETS)
    assert found["rows"] == frame.height
    assert found["requests"] == distinct_requests(frame) and found["from_journal"] == 0
    assert found["skipped"] == frame.height - frame.filter(
        pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != "")).height
    assert found["prompt_tokens"] > found["cached_tokens"] > 0 and found["completion_tokens"] > 0
    assert found["cost_cny_cached"] < found["cost_cny"]
    assert found["cost_cny_batch"] == pytest.approx(found["cost_cny"] / 2, abs=1e-6)
    assert found["requests_after_packing"] == "off (the task sets no pack_tokens)" and found["calibrated_on"] == 0
    assert list(tmp_path.iterdir()) == []  # no journal created, no output, nothing else


def test_the_table_says_what_is_not_there_yet(tmp_path: Path) -> None:
    done = cli(["estimate", "--task", "ticket_qa", "--input", str(TICKETS)], tmp_path,
               GLM_EXTRACT_JOURNAL_PATH=str(tmp_path / "j.sqlite"))
    assert done.returncode == 0, done.stderr
    assert "after packing" in done.stdout and "not yet" in done.stdout and "CNY batch" in done.stdout


@pytest.mark.parametrize(("args", "names"), [
    (["--input", "missing.parquet"], "missing.parquet"),
    (["--input", str(TICKETS), "--column", "text=body"], "body"),
    (["--input", str(TICKETS), "--column", "nonsense"], "NAME=INPUT_COLUMN"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], names: str) -> None:
    done = cli(["estimate", "--task", "ticket_qa", *args], tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_column_mapping_reads_the_text_from_another_column(tmp_path: Path) -> None:
    renamed = tmp_path / "in" / "renamed.parquet"
    renamed.parent.mkdir()
    pl.read_parquet(TICKETS).rename({"text": "body"}).write_parquet(renamed)
    done = cli(["estimate", "--task", "ticket_qa", "--input", str(renamed), "--column", "text=body", "--json"],
               tmp_path, GLM_EXTRACT_JOURNAL_PATH=str(tmp_path / "j.sqlite"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prompt_tokens"] == estimate_json(tmp_path / "in")["prompt_tokens"]


def test_estimate_is_within_15_percent_of_the_run_and_then_sees_its_answers(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    before = estimate_json(tmp_path, "--journal", str(journal))
    output = tmp_path / "out.parquet"
    done = cli(["run", "--task", "ticket_qa", "--input", str(TICKETS), "--output", str(output), "-q",
                "--journal", str(journal), "--emulator-latency", "fixed:0.01"], tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(output.with_name(output.name + ".summary.json").read_text())
    actual = summary["tokens"]["prompt"] + summary["tokens"]["completion"]
    predicted = before["prompt_tokens"] + before["completion_tokens"]
    assert abs(predicted - actual) / actual <= 0.15, (predicted, actual)
    check = summary["estimate"]  # the run reports how far the estimate was from what it used
    assert check["requests"] == before["requests"] and check["actual_tokens"] == actual
    assert check["estimated_tokens"] == predicted and abs(check["error"]) <= 0.15
    after = estimate_json(tmp_path, "--journal", str(journal))
    assert after["requests"] == 0 and after["from_journal"] == before["requests"]
    assert after["cost_cny"] == 0 and after["calibrated_on"] == 0  # the emulator's answers teach nothing


def _realish_answer(body: dict[str, Any]) -> tuple[str, int, int]:
    """Schema-valid answers, and usage that counts twice our rule of thumb for the prompt and exactly
    100 tokens per answer."""
    return answer_request(body).text, 2 * count_prompt_tokens(body["messages"], body.get("tools")), 100


@contextmanager
def realish_glm() -> Iterator[str]:
    """An OpenAI-compatible endpoint that is not the emulator, answering as :func:`_realish_answer`."""
    with serve_glm(_realish_answer) as (base_url, _):
        yield base_url


def test_estimate_calibrates_on_real_answers_in_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    first = tmp_path / "first.parquet"
    pl.read_parquet(TICKETS).head(20).write_parquet(first)
    with realish_glm() as base_url:
        done = cli(["run", "--task", "ticket_qa", "--input", str(first), "--output", str(tmp_path / "o.parquet"),
                    "-q", "--journal", str(journal), "--base-url", base_url], tmp_path)
        assert done.returncode == 0, done.stderr
        check = json.loads((tmp_path / "o.parquet.summary.json").read_text())["estimate"]
        assert check["error"] < -0.3, check  # this endpoint counts prompts twice our rule: the run says so
        uncalibrated = estimate_json(tmp_path, "--base-url", base_url, "--journal", str(tmp_path / "none.sqlite"))
        calibrated = estimate_json(tmp_path, "--base-url", base_url, "--journal", str(journal))
    answered = distinct_requests(pl.read_parquet(first))
    assert calibrated["from_journal"] == answered
    assert calibrated["requests"] == uncalibrated["requests"] - answered
    assert calibrated["calibrated_on"] == answered
    assert calibrated["prompt_scale"] == pytest.approx(2.0, rel=0.01)
    assert calibrated["completion_per_request"] == 100
    assert first_requests(calibrated)[1] == 100 * calibrated["requests"]
    # the same rows the uncalibrated estimate counted once are counted twice now (scale 2)
    per_request = first_requests(uncalibrated)[0] / uncalibrated["requests"]
    assert first_requests(calibrated)[0] == pytest.approx(2 * per_request * calibrated["requests"], rel=0.05)
    # the real answers (no re-asks among them) also teach the allowance: below the prior's now
    assert calibrated["allowance"]["learnt_from"] == answered
    assert 0 < calibrated["allowance"]["reasks_per_request"] < uncalibrated["allowance"]["reasks_per_request"]


def first_requests(found: dict[str, Any]) -> tuple[int, int]:
    """The estimate's prompt and completion tokens without its allowance for re-asks."""
    allowance = found["allowance"]
    return (found["prompt_tokens"] - allowance["prompt_tokens"],
            found["completion_tokens"] - allowance["completion_tokens"])


def test_the_flows_estimate_artifact_shows_cache_and_batch_prices() -> None:
    from flows.artifacts import estimate_markdown
    from pipeline.estimate import Estimate, EstimateWalk, Prices, finish
    from pipeline.tasks import load_task
    from tests.conftest import SCHEMAS

    found = Estimate("ticket_qa", "in.parquet", rows=3, shards=1, requests=3)
    found._counted_prompt, found._counted_cached = 3000, 2000
    data = finish(found, EstimateWalk(), load_task("ticket_qa", SCHEMAS), Prices(online=0.5, cached=0.25)).as_dict()
    text = estimate_markdown(data)
    assert f"{data['cost_cny_cached']:.4f} CNY" in text and f"{data['cost_cny_batch']:.4f} CNY" in text
    assert data["cost_cny_cached"] < data["cost_cny"] and "2000 cached tokens" in text
    # the cost includes the allowance for re-asks and runaway answers, and the artifact says so
    allowance = data["allowance"]
    assert "not included" not in text and allowance["source"] in text
    assert f"{allowance['prompt_tokens']} prompt and {allowance['completion_tokens']} completion tokens" in text
    assert f"worst case ≈ {data['worst_case']['cost_cny']:.4f} CNY" in text
