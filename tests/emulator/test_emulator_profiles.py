"""Item: behaviour profiles. ``clean`` for tests, ``realistic`` (documented rates) for runs and benchmarks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import polars as pl
import pytest

from emulator import EmulatorConfig, LatencySpec, serve_in_thread
from emulator.cli import build_parser, config_from_args
from emulator.config import PROFILES, REALISTIC_LATENCY
from emulator.faults import break_answer
from emulator.schema_plan import compile_schema
from tests.emulator.support import REPO, SAMPLE, run_pipeline

SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["sentiment", "amount", "summary"],
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                   "amount": {"type": "number"}, "summary": {"type": "string"}},
}  # fmt: skip
GOOD = {"sentiment": "negative", "amount": 12.5, "summary": "late parcel"}


def test_clean_has_no_faults_and_no_latency_realistic_has_both() -> None:
    clean, realistic = EmulatorConfig.for_profile("clean"), EmulatorConfig.for_profile("realistic")
    assert dict(clean.faults) == {} and clean.latency == LatencySpec()
    assert realistic.latency == REALISTIC_LATENCY and realistic.profile == "realistic"
    wanted = {"fence", "prose", "wrong_enum", "missing_required", "string_for_number", "truncated", "1302", "500",
              "sensitive_output"}
    assert wanted <= set(realistic.faults)
    assert 0.05 < sum(realistic.faults.values()) < 0.25  # a small share, not a storm
    assert EmulatorConfig() == clean  # the Python default stays the clean profile


def test_the_documented_rates_are_the_profile_rates() -> None:
    doc = (REPO / "docs" / "emulator.md").read_text()
    section = doc.split("## Profiles", 1)[1].split("\n## ", 1)[0]
    documented = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| `([\w]+)` \| ([\d.]+) \|", section, re.M)}
    assert documented == dict(PROFILES["realistic"].faults)


@pytest.mark.parametrize(("fault", "broken_field"), [("wrong_enum", "sentiment"), ("missing_required", None),
                                                     ("string_for_number", "amount")])
def test_each_schema_violation_breaks_the_schema_its_way(fault: str, broken_field: str | None) -> None:
    plan = compile_schema(SCHEMA)
    broken = orjson.loads(break_answer(fault, orjson.dumps(GOOD).decode(), GOOD, plan).text)
    assert not jsonschema_rs.validator_for(SCHEMA).is_valid(broken)
    if fault == "wrong_enum":
        assert broken["sentiment"] not in ("positive", "negative")
    elif fault == "string_for_number":
        assert isinstance(broken["amount"], str)
    else:
        assert set(broken) < set(GOOD)


def test_the_cli_defaults_to_realistic_and_fault_flags_replace_the_profile_table() -> None:
    parser = build_parser()
    assert "--profile" in parser.format_help()
    default = config_from_args(parser.parse_args([]))
    assert default.profile == "realistic" and default.faults == PROFILES["realistic"].faults
    assert default.latency == REALISTIC_LATENCY
    assert dict(config_from_args(parser.parse_args(["--fault", "none"])).faults) == {}
    only = config_from_args(parser.parse_args(["--fault", "1302=0.2", "--latency", "fixed:0"]))
    assert dict(only.faults) == {"1302": 0.2} and only.latency == LatencySpec()
    clean = config_from_args(parser.parse_args(["--profile", "clean"]))
    assert dict(clean.faults) == {} and clean.latency == LatencySpec()
    # a config crosses a process boundary unchanged
    config = EmulatorConfig.for_profile("realistic", seed=3)
    assert config_from_args(parser.parse_args(config.to_argv())) == config
    empty = EmulatorConfig.for_profile("realistic", faults={})
    assert config_from_args(parser.parse_args(empty.to_argv())) == empty


def test_a_realistic_run_reasks_and_accounts_for_every_row(tmp_path: Path) -> None:
    config = EmulatorConfig.for_profile("realistic", latency=LatencySpec(), concurrency=8)
    with serve_in_thread(config) as emu:
        tickets = run_pipeline(emu.base_url, tmp_path, task="ticket_qa", concurrency=8)
        reports = run_pipeline(emu.base_url, tmp_path, task="financial_report", concurrency=8)
        outcomes = emu.stats()["by_outcome"]
    assert tickets["requests"]["reasks"] + reports["requests"]["reasks"] > 0
    for summary, name in ((tickets, "tickets.parquet"), (reports, "financial_reports.parquet")):
        rows = pl.read_parquet(SAMPLE / name).height
        assert summary["rows"] == rows == sum(summary["status_counts"].values())
        assert pl.read_parquet(summary["output"]).height == rows
    assert len(set(outcomes) - {"ok"}) >= 2, outcomes  # more than one kind of misbehaviour met


def test_the_project_cli_shows_the_emulators_flags_in_help() -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "emulator", "--help"], cwd=REPO, text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for flag in ("--profile", "--tier", "--latency", "--fault", "--models", "--context-tokens"):
        assert flag in done.stdout
