"""The flow end to end under one session-wide Prefect test harness: artifacts, strict limit,
Secret block, estimate-only, and resume after a fatal shard failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact
from prefect.context import FlowRunContext

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import serve_in_thread
from flows.extract import extract, extract_documents
from flows.limits import LimitMissing, ensure_limit, limit_name, read_limit_response
from flows.params import ExtractParams
from flows.secrets import save_secret_key
from pipeline.errors import RunAborted
from pipeline.settings import DEFAULT_MODEL
from tests.flows.inputs import TICKETS, write_tickets

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]
GCL = limit_name(DEFAULT_MODEL)


def run_flow(**fields: Any) -> tuple[dict[str, Any], UUID]:
    """Run the flow; return its result and flow run id."""
    async def go() -> tuple[dict[str, Any], UUID]:
        state = await extract_documents(ExtractParams.model_validate(fields), return_state=True)
        run_id = state.state_details.flow_run_id
        assert run_id is not None
        result: dict[str, Any] = await state.aresult()
        return result, run_id
    return asyncio.run(go())


async def artifacts_of(run_id: UUID) -> dict[str, Artifact]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {a.key or str(a.id): a for a in found}


async def messages_of(run_id: UUID, *, until: str) -> list[str]:
    """The run's log messages and parameters, once a message containing ``until`` has been shipped
    (logs reach the server in batches, every 2 s)."""
    async with get_client() as client, asyncio.timeout(30):
        while True:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            if any(until in log.message for log in logs):
                break
            await asyncio.sleep(0.2)
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return [log.message for log in logs] + [json.dumps(run.parameters) for run in runs]


def test_offline_run_writes_output_summary_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLM_EXTRACT_SHARD_SIZE", "20")
    asyncio.run(ensure_limit(GCL, 9))  # whatever an earlier test left: now it exists with 9 slots
    assert asyncio.run(ensure_limit(GCL, 8)) == "updated"
    assert asyncio.run(ensure_limit(GCL, 8)) == "unchanged"
    summary, run_id = run_flow(task="ticket_qa", input=str(TICKETS), output=str(tmp_path / "out.parquet"),
                               concurrency=8, partition_date="2026-11-25")
    assert summary["rows"] == 60 and summary["shards"] == 3 and summary["offline_emulator"] is True
    assert summary["limiter"] == f"prefect:{GCL}" and summary["partition_date"] == "2026-11-25"
    assert pl.read_parquet(tmp_path / "out.parquet").height == 60
    assert json.loads((tmp_path / "out.parquet.summary.json").read_text())["run_id"] == summary["run_id"]
    found = asyncio.run(artifacts_of(run_id))
    kinds = {"summary", "errors", "outputs", "progress"}
    assert {f"glm-extract-ticket-qa-{kind}" for kind in kinds} <= set(found)
    assert found["glm-extract-ticket-qa-progress"].data == 100.0
    outputs = str(found["glm-extract-ticket-qa-outputs"].data)
    assert "OFFLINE EMULATOR" in outputs and "Evaluation against gold labels" in outputs
    limit = asyncio.run(read_limit_response(GCL))
    assert limit is not None and limit.active_slots == 0


def test_missing_global_limit_fails_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(LimitMissing, match="glm-extract prefect-setup"):
        run_flow(task="ticket_qa", input=str(TICKETS), output=str(tmp_path / "o.parquet"), model="glm-unlimited")
    assert not (tmp_path / "o.parquet").exists()


def test_key_comes_from_the_secret_block_and_never_reaches_logs(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-flowtest-0123456789"
    asyncio.run(save_secret_key("flow-test-key", key))
    asyncio.run(ensure_limit(GCL, 8))
    source = write_tickets(tmp_path / "in.parquet", 0, 6)
    with serve_in_thread(EmulatorConfig(concurrency=8, api_key=key)) as emulator:  # 401 without the key
        monkeypatch.setenv("GLM_EXTRACT_BASE_URL", emulator.base_url)
        summary, run_id = run_flow(task="ticket_qa", input=str(source), output=str(tmp_path / "o.parquet"),
                                   api_key_block="flow-test-key")
    assert summary["status_counts"]["ok"] == 6 and summary["endpoint"] == "custom"
    messages = asyncio.run(messages_of(run_id, until=f"run {summary['run_id']}:"))  # the run's last line
    assert any("API key from: secret block" in m for m in messages)
    stored = " ".join(messages) + json.dumps([a.data for a in asyncio.run(artifacts_of(run_id)).values()])
    assert key not in stored


def test_estimate_only_sends_and_writes_nothing(tmp_path: Path) -> None:
    estimate, run_id = run_flow(task="ticket_qa", input=str(TICKETS), output=str(tmp_path / "o.parquet"),
                                estimate_only=True, model="not-set-up")  # no limit needed: nothing is sent
    assert estimate["estimate_only"] is True and estimate["rows"] == 60 and estimate["requests"] > 0
    assert not (tmp_path / "o.parquet").exists()
    assert "glm-extract-ticket-qa-estimate" in asyncio.run(artifacts_of(run_id))
    again = asyncio.run(extract("ticket_qa", str(TICKETS), str(tmp_path / "o.parquet"), estimate_only=True))
    assert again["requests"] == estimate["requests"]


def test_a_fatal_shard_keeps_its_answers_and_the_rerun_pays_only_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLM_EXTRACT_SHARD_SIZE", "10")
    asyncio.run(ensure_limit(GCL, 8))
    args = {"task": "ticket_qa", "input": str(TICKETS), "output": str(tmp_path / "o.parquet"), "concurrency": 4}
    broke = EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.01"), fatal_1113_from=25)
    with serve_in_thread(broke) as emulator:
        monkeypatch.setenv("GLM_EXTRACT_BASE_URL", emulator.base_url)
        with pytest.raises(RunAborted, match="1113"):
            run_flow(**args)
        paid = emulator.stats()["completed_ok"]
    assert not (tmp_path / "o.parquet").exists()
    assert not list(tmp_path.glob(".o.parquet.parts-*"))
    with serve_in_thread(EmulatorConfig(concurrency=8)) as emulator:
        monkeypatch.setenv("GLM_EXTRACT_BASE_URL", emulator.base_url)
        summary, _ = run_flow(**args)
        sent_again = emulator.stats()["requests_received"]
    assert paid >= 20 and summary["rows"] == 60 and summary["status_counts"]["ok"] == 58
    assert summary["requests"]["from_journal"] >= paid and sent_again + paid <= 58  # 57 distinct texts
    assert FlowRunContext.get() is None


def test_budget_and_export_parameters_reach_the_engine_and_the_warehouse(tmp_path: Path) -> None:
    asyncio.run(ensure_limit(GCL, 8))
    source = write_tickets(tmp_path / "in.parquet", 0, 8)
    warehouse = tmp_path / "w.duckdb"
    summary, run_id = run_flow(task="ticket_qa", input=str(source), output=str(tmp_path / "o.parquet"),
                               budget_cny=0, export_to=str(warehouse))
    assert summary["status_counts"]["skipped"] == 8 and summary["requests"]["sent"] == 0
    assert {e["code"] for e in summary["errors"]} == {"budget_reached"}
    assert warehouse.exists()
    outputs = str(asyncio.run(artifacts_of(run_id))["glm-extract-ticket-qa-outputs"].data)
    assert "exported 8 rows" in outputs


def test_a_flow_on_a_missing_input_fails_with_its_one_line_an_artifact_and_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-input.parquet"

    async def go() -> tuple[Any, UUID]:
        state = await extract_documents(ExtractParams.model_validate(
            {"task": "ticket_qa", "input": str(missing), "output": str(tmp_path / "o.parquet")}), return_state=True)
        assert state.state_details.flow_run_id is not None
        return state, state.state_details.flow_run_id

    state, run_id = asyncio.run(go())
    assert state.is_failed() and "input not found" in str(state.message) and str(missing) in str(state.message)
    assert "\n" not in str(state.message)
    logs = asyncio.run(messages_of(run_id, until="Finished in state"))
    assert not [m for m in logs if "Traceback" in m], logs
    found = asyncio.run(artifacts_of(run_id))
    assert "input not found" in str(found["glm-extract-ticket-qa-errors"].data)
    assert not (tmp_path / "o.parquet").exists()
