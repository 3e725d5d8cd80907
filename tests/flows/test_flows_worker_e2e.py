"""A real ``prefect worker`` started outside the checkout and without GLM_EXTRACT_HOME runs a deployment
from prefect.yaml to completion: its pull step finds the code and the tasks.

What an operator does (docs/operations.md, "Workers"): ``prefect-setup --work-pool``, ``prefect deploy
--all`` from the checkout, ``prefect worker start`` on a machine — here in an unrelated directory.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from tests.conftest import REPO, SAMPLE
from tests.flows.test_flows_server import (
    PREFECT,
    clean_env,
    free_port,
    process_group,
    tail,
    trigger,
    wait_final,
    wait_healthy,
)

pytestmark = [pytest.mark.prefect, pytest.mark.slow]
POOL = "glm-extract"  # the pool prefect.yaml names
ON_DEMAND = "extract-documents/financial-report-extraction"
GLM = str(Path(sys.executable).parent / "glm-extract")


def test_worker_without_glm_extract_home_completes_a_run(tmp_path: Path) -> None:
    home, port = tmp_path / "prefect-home", free_port()
    url = f"http://127.0.0.1:{port}/api"
    server_env = clean_env(
        PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
    )
    client_env = clean_env(PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path / "client-home"))
    client_env.pop("GLM_EXTRACT_HOME", None)
    client_env.pop("GLM_EXTRACT_SCHEMAS_DIR", None)
    server_log = tmp_path / "server.log"
    argv = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(argv, server_env, server_log, tmp_path) as server:
        wait_healthy(url, server, server_log)
        for step in ([GLM, "prefect-setup", "--limit", "4", "--work-pool", POOL],
                     [PREFECT, "--no-prompt", "deploy", "--all"]):
            done = subprocess.run(step, cwd=REPO, env=client_env, capture_output=True, text=True, timeout=300,
                                  check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        elsewhere = tmp_path / "worker-cwd"
        elsewhere.mkdir()
        config = EmulatorConfig(concurrency=4, latency=LatencySpec.parse("fixed:0.01"), seed=1)
        with start_emulator(config) as emulator:
            worker_env = {**client_env, "GLM_EXTRACT_BASE_URL": emulator.base_url,
                          "GLM_EXTRACT_JOURNAL_PATH": str(tmp_path / "journal.sqlite")}
            worker_log = tmp_path / "worker.log"
            worker_argv = [PREFECT, "worker", "start", "--pool", POOL, "--prefetch-seconds", "1"]
            with process_group(worker_argv, worker_env, worker_log, elsewhere), \
                    temporary_settings(updates={PREFECT_API_URL: url}):
                output = tmp_path / "out" / "reports-{partition_date}.parquet"
                params = {"task": "financial_report", "input": str(SAMPLE / "financial_reports.parquet"),
                          "output": str(output), "partition_date": "2026-11-25"}
                run = asyncio.run(trigger(ON_DEMAND, params))
                (final,) = asyncio.run(wait_final([run.id], timeout=300))
                log = tail(worker_log)
    assert final.state is not None and final.state.is_completed(), log
    written = tmp_path / "out" / "reports-2026-11-25.parquet"
    assert pl.read_parquet(written).height == pl.read_parquet(SAMPLE / "financial_reports.parquet").height
    assert "FileNotFoundError" not in log
