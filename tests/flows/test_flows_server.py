"""Against a real ``prefect server start``: set-up, served deployments, a run triggered through the
API exactly as the UI does, its artifacts, and two concurrent runs sharing one global limit."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import polars as pl
import pytest
import typer
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorProcess, start_emulator
from flows.commands import register
from flows.limits import limit_name, read_limit_response
from pipeline.settings import DEFAULT_MODEL
from tests.conftest import REPO, SAMPLE, SCHEMAS
from tests.flows.inputs import write_tickets

pytestmark = pytest.mark.prefect
CAP = 4  # the account's cap: the emulator answers 1302 past it, the global limit holds runs under it
LATENCY = "fixed:1.0"  # slow answers: two runs started seconds apart still overlap for many seconds
GCL = limit_name(DEFAULT_MODEL)
PREFECT = str(Path(sys.executable).parent / "prefect")
SERVE_APP = ("import typer; from flows.commands import register; "
             "app = typer.Typer(); register(app); app()")
ON_DEMAND = "extract-documents/financial-report-extraction"
NIGHTLY = "extract-documents/nightly-ticket-qa"
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    drop = {"PREFECT_API_URL", "ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY", "GLM_EXTRACT_BASE_URL"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **QUIET, **extra}


@contextmanager
def process_group(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own process group; SIGTERM (then SIGKILL) the whole group at the end."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prefect server exited:\n{tail(log)}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout}s:\n{tail(log)}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    """``prefect server start`` on a free port, SQLite in tmp, filesystem lease storage."""
    home, port = workdir / "prefect-home", free_port()
    env = clean_env(
        PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="2",
    )
    url, log = f"http://127.0.0.1:{port}/api", workdir / "server.log"
    argv = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(argv, env, log, workdir) as proc:
        wait_healthy(url, proc, log)
        yield url


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    config = EmulatorConfig(concurrency=CAP, latency=LatencySpec.parse(LATENCY), seed=1)
    with start_emulator(config) as emu:
        yield emu


@pytest.fixture(scope="module")
def served(server: str, emulator: EmulatorProcess, workdir: Path) -> Iterator[str]:
    """``glm-extract serve`` (creates the limit, serves both deployments) until the module ends."""
    env = clean_env(
        PREFECT_API_URL=server, PREFECT_HOME=str(workdir / "serve-home"), PREFECT_RUNNER_POLL_FREQUENCY="1",
        GLM_EXTRACT_BASE_URL=emulator.base_url, GLM_EXTRACT_JOURNAL_PATH=str(workdir / "journal.sqlite"),
        GLM_EXTRACT_SCHEMAS_DIR=str(SCHEMAS), GLM_EXTRACT_SHARD_SIZE="10", PYTHONPATH=str(REPO),
    )
    log = workdir / "serve.log"
    argv = [sys.executable, "-c", SERVE_APP, "serve", "--runs", "4", "--limit", str(CAP)]
    with process_group(argv, env, log, workdir) as proc, temporary_settings(updates={PREFECT_API_URL: server}):
        asyncio.run(wait_for_deployments(proc, log))
        yield server


async def wait_for_deployments(proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited:\n{tail(log)}"
            try:
                await client.read_deployment_by_name(ON_DEMAND)
                await client.read_deployment_by_name(NIGHTLY)
                return
            except ObjectNotFound:
                await asyncio.sleep(0.5)
    raise AssertionError(f"deployments not created after {timeout}s:\n{tail(log)}")


async def trigger(name: str, params: dict[str, Any]) -> FlowRun:
    """What the UI's Run → Custom run does: POST /deployments/{id}/create_flow_run."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        return await client.create_flow_run_from_deployment(deployment.id, parameters={"params": params})


async def wait_final(run_ids: list[UUID], timeout: float = 180) -> list[FlowRun]:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            runs = [await client.read_flow_run(run_id) for run_id in run_ids]
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            await asyncio.sleep(1)
    raise AssertionError(f"runs not finished after {timeout}s: {[r.state for r in runs]}")


async def read_deployment(name: str) -> DeploymentResponse:
    async with get_client() as client:
        return await client.read_deployment_by_name(name)


async def artifact_data(run_id: UUID) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {a.key: a.data for a in found if a.key}


def setup_cli(*args: str) -> str:
    """``glm-extract prefect-setup ARGS`` in-process (the served fixture points Prefect at the server)."""
    app = typer.Typer()
    register(app)
    done = CliRunner().invoke(app, ["prefect-setup", *args])
    assert done.exit_code == 0, done.output
    return " ".join(done.output.split())


def test_setup_is_idempotent_and_deployments_are_scheduled(served: str) -> None:
    assert f"{GCL}: unchanged (limit {CAP})" in setup_cli("--limit", str(CAP))  # serve created it
    assert f"{GCL}: updated (limit {CAP + 1})" in setup_cli("--limit", str(CAP + 1))
    assert f"{GCL}: updated (limit {CAP})" in setup_cli("--limit", str(CAP))
    nightly = asyncio.run(read_deployment(NIGHTLY))
    schedule = nightly.schedules[0].schedule
    assert (getattr(schedule, "cron", None), getattr(schedule, "timezone", None)) == ("0 2 * * *", "Asia/Shanghai")
    assert nightly.enforce_parameter_schema and nightly.parameters["params"]["task"] == "ticket_qa"


def test_invalid_parameters_are_rejected_before_a_run_exists(served: str) -> None:
    bad = {"task": "no_such_task", "input": "x.parquet", "output": "y.parquet"}
    with pytest.raises(PrefectHTTPStatusError) as caught:
        asyncio.run(trigger(ON_DEMAND, bad))
    assert caught.value.response.status_code == 409


def test_ui_triggered_run_completes_with_findable_artifacts(served: str, workdir: Path) -> None:
    params = {"task": "financial_report", "input": str(SAMPLE / "financial_reports.parquet"),
              "output": str(workdir / "reports" / "fin-{partition_date}.parquet"), "partition_date": "2026-11-25"}
    run = asyncio.run(trigger(ON_DEMAND, params))
    (done,) = asyncio.run(wait_final([run.id]))
    assert done.state is not None and done.state.is_completed(), tail(workdir / "serve.log")
    output = workdir / "reports" / "fin-2026-11-25.parquet"
    assert pl.read_parquet(output).height == 25 and output.with_name(output.name + ".summary.json").exists()
    data = asyncio.run(artifact_data(run.id))
    keys = {f"glm-extract-financial-report-{kind}" for kind in ("summary", "errors", "outputs", "progress")}
    assert keys <= set(data) and data["glm-extract-financial-report-progress"] == 100.0
    assert "fin-2026-11-25.parquet" in str(data["glm-extract-financial-report-outputs"])


ROWS_PER_RUN = 45


def distinct_tickets(path: Path, tag: str) -> Path:
    """45 sample tickets whose texts differ from any other run's (no journal hits between runs)."""
    frame = pl.read_parquet(write_tickets(path, 0, ROWS_PER_RUN))
    frame.with_columns(pl.col("ticket_id") + f"-{tag}", pl.col("text") + f"\n({tag})").write_parquet(path)
    return path


def test_two_concurrent_runs_share_the_account_cap(served: str, emulator: EmulatorProcess, workdir: Path) -> None:
    inputs = [distinct_tickets(workdir / f"part-{i}.parquet", f"run {i}") for i in range(2)]
    emulator.reset()
    runs = [asyncio.run(trigger(ON_DEMAND, {"task": "ticket_qa", "input": str(path), "concurrency": CAP,
                                            "output": str(workdir / f"out-{i}.parquet")}))
            for i, path in enumerate(inputs)]
    finished = asyncio.run(wait_final([run.id for run in runs]))
    assert all(r.state is not None and r.state.is_completed() for r in finished), tail(workdir / "serve.log")
    stats = emulator.stats()
    assert stats["max_in_flight"] <= CAP and "1302" not in stats["by_code"], stats
    for i in range(2):
        table = pl.read_parquet(workdir / f"out-{i}.parquet")
        assert table.height == ROWS_PER_RUN and table["_status"].null_count() == 0
    first, second = sorted(finished, key=lambda r: r.start_time or 0)
    assert second.start_time is not None and first.end_time is not None and second.start_time < first.end_time
    limit = asyncio.run(read_limit_response(GCL))
    assert limit is not None and limit.active_slots == 0


HOLDER = """
import asyncio, sys
import flows.limits as limits
limits.LEASE_SECONDS = 60.0  # the server's minimum; production leases are LEASE_SECONDS long
async def hold():
    async with limits.Gate(label="test", name=sys.argv[1], cap=4).lease(2):
        print("HOLDING", flush=True)
        await asyncio.sleep(3600)
asyncio.run(hold())
"""


@pytest.mark.slow
def test_slots_of_a_killed_holder_come_back(served: str, workdir: Path) -> None:
    env = clean_env(PREFECT_API_URL=served, PREFECT_HOME=str(workdir / "holder-home"), PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, GCL], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"HOLDING"
        limit = asyncio.run(read_limit_response(GCL))
        assert limit is not None and limit.active_slots == 2
        os.killpg(holder.pid, signal.SIGKILL)  # a worker dies without releasing
        holder.wait(10)
        clock = time.monotonic()
        while (limit := asyncio.run(read_limit_response(GCL))) is not None and limit.active_slots:
            assert time.monotonic() - clock < 150, "slots of a dead holder were not reclaimed"
            time.sleep(2)
    finally:
        stop_group(holder)
