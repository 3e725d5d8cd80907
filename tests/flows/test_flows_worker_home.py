"""A worker started without GLM_EXTRACT_HOME finds the code and tasks, or fails with one line.

The pull steps of prefect.yaml run as a worker's flow run runs them (Prefect's ``run_step``, in a
fresh process standing in an unrelated directory; block and variable references, which these steps
do not hold, are left unresolved so no server is needed), then each deployment's entrypoint is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.home import resolve_home
from pipeline.errors import GlmExtractError

REPO = Path(__file__).resolve().parents[2]
QUIET = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
WORKER_RUN = """
import asyncio, os, sys
import yaml
from prefect.deployments.steps import core
from prefect.flows import load_flow_from_entrypoint

doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))


async def _unchanged(value, **_):  # block and variable references need a server; these steps hold none
    return value


core.resolve_block_document_references = core.resolve_variables = _unchanged
token = core._PULL_STEP_SOURCE_CWD.set(core.Path.cwd()) if hasattr(core, "_PULL_STEP_SOURCE_CWD") else None
for step in doc["pull"]:
    try:
        asyncio.run(core.run_step(step))
    except Exception as exc:
        print("STEP-FAILED", type(exc).__name__, str(exc))
        raise SystemExit(3) from None
for deployment in doc["deployments"]:
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    print("FLOW", deployment["name"], flow.name)
print("CWD", os.getcwd())
"""


def _worker_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GLM_EXTRACT_HOME", "GLM_EXTRACT_SCHEMAS_DIR")}
    return subprocess.run(
        [sys.executable, "-c", WORKER_RUN, str(REPO / "prefect.yaml")],
        cwd=tmp_path,
        env={**base, **QUIET, "PREFECT_HOME": str(tmp_path / ".prefect"), **env},
        capture_output=True, text=True, timeout=240, check=False,
    )


def test_without_glm_extract_home_the_worker_finds_the_checkout(tmp_path: Path) -> None:
    done = _worker_run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"CWD {REPO}" in done.stdout
    assert "FLOW nightly-ticket-qa extract-documents" in done.stdout
    assert "FLOW financial-report-extraction extract-documents" in done.stdout


def test_a_wrong_glm_extract_home_fails_with_one_line_saying_what_to_set(tmp_path: Path) -> None:
    done = _worker_run(tmp_path, GLM_EXTRACT_HOME=str(tmp_path / "nowhere"))
    assert done.returncode == 3, done.stdout + done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("STEP-FAILED")]
    assert line.startswith("STEP-FAILED GlmExtractError GLM_EXTRACT_HOME=")
    assert "set GLM_EXTRACT_HOME to the glm-extract checkout" in line
    assert "FileNotFoundError" not in done.stdout + done.stderr


def test_resolve_home_rules(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "flows").mkdir(parents=True)
    (checkout / "flows" / "extract.py").write_text("")
    assert resolve_home(str(checkout), installed_from=tmp_path) == checkout.resolve()
    assert resolve_home(None, installed_from=checkout) == checkout
    assert resolve_home("  ", installed_from=checkout) == checkout
    with pytest.raises(GlmExtractError, match=r"GLM_EXTRACT_HOME is not set .* start the worker with") as info:
        resolve_home(None, installed_from=tmp_path / "site-packages")
    assert "\n" not in str(info.value)
