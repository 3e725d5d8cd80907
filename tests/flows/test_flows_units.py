"""Flow pieces without a Prefect server: parameters, sizing, retry predicate, artifacts, estimate,
and the shard task through ``.fn()`` against an in-thread emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
import polars as pl
import pytest
import typer
import yaml  # type: ignore[import-untyped]
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from prefect.logging import disable_run_logger
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Failed
from prefect.utilities.callables import parameter_schema
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import serve_in_thread
from flows.artifacts import OFFLINE_NOTE, artifact_key, error_rows, outputs_markdown, summary_rows
from flows.commands import register
from flows.deployments import build_deployments
from flows.estimate import estimate_run
from flows.extract import (
    MAX_SHARDS,
    ShardJob,
    extract_documents,
    extract_shard,
    is_infrastructure_fault,
    merge_results,
    retry_on_infrastructure,
    shard_size_for,
)
from flows.limits import LOCAL_LABEL, Gate, choose_gate, limit_name, local_gate
from flows.params import ExtractParams, fill_date, local_path, partition_day, yesterday_in_shanghai
from flows.reports import evaluate_output, failure_message
from flows.secrets import RedactFilter, describe_key_source
from pipeline import io
from pipeline.errors import InputError, RunAborted
from pipeline.glm.client import Endpoint
from pipeline.glm.transport import build_transport
from pipeline.runner import Run, RunRequest, Target, build_summary, new_run_id, prepare_run
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from tests.conftest import REPO
from tests.flows.inputs import TICKETS, write_mini_tickets

BASE = {"task": "ticket_qa", "input": "in.parquet", "output": "out.parquet"}


# --- parameters -------------------------------------------------------------------------------

def test_params_defaults_and_task_enum() -> None:
    params = ExtractParams.model_validate(BASE)
    assert params.task.value == "ticket_qa" and params.mode.value == "online"
    assert params.concurrency == 30 and params.api_key_block == "glm-api-key" and params.partition_date is None


@pytest.mark.parametrize("bad", [
    {"task": "no_such_task"}, {"output": "out.csv"}, {"input": "s3://bucket/x.parquet"},
    {"concurrency": 0}, {"budget_cny": -1}, {"export_to": "postgresql://me:secret@db/warehouse"},
    {"model": "glm 4"}, {"api_key": "sk-123"}, {"mode": "batch"},
])
def test_params_reject_invalid_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ExtractParams.model_validate({**BASE, **bad})


def test_params_accept_uri_globs_and_password_free_targets() -> None:
    params = ExtractParams.model_validate({**BASE, "input": "file:///data/t/*.parquet",
                                           "export_to": "postgresql://etl@db:5432/wh?schema=x"})
    assert local_path(params.input) == "/data/t/*.parquet"


def test_parameter_schema_is_a_strict_form() -> None:
    schema = parameter_schema(extract_documents).model_dump()
    model = schema["definitions"]["ExtractParams"]
    assert model["additionalProperties"] is False
    assert set(model["required"]) == {"task", "input", "output"}
    assert {"ticket_qa", "financial_report"} <= set(schema["definitions"]["TaskName"]["enum"])
    assert all(field.get("description") for field in model["properties"].values())
    assert "api_key" not in model["properties"]


def test_partition_date_defaults_to_yesterday_in_shanghai() -> None:
    assert yesterday_in_shanghai(datetime(2026, 11, 26, 17, 30, tzinfo=UTC)) == date(2026, 11, 26)  # 01:30 +08
    assert yesterday_in_shanghai(datetime(2026, 11, 26, 15, 59, tzinfo=UTC)) == date(2026, 11, 25)  # 23:59 +08
    explicit = ExtractParams.model_validate({**BASE, "partition_date": "2026-01-02"})
    assert partition_day(explicit) == date(2026, 1, 2)


def test_fill_date_touches_only_the_placeholder() -> None:
    assert fill_date("d/dt={partition_date}/{x}.parquet", date(2026, 3, 4)) == "d/dt=2026-03-04/{x}.parquet"


# --- shape --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "preferred", "size"), [(60, 1000, 1000), (1_000_000, 1000, 3334), (0, 500, 500)])
def test_shard_size_keeps_runs_under_the_task_cap(rows: int, preferred: int, size: int) -> None:
    assert shard_size_for(rows, preferred) == size
    assert -(-rows // size) <= MAX_SHARDS


@pytest.mark.parametrize(("exc", "retry"), [
    (OSError("disk"), True), (sqlite3.OperationalError("database is locked"), True),
    (httpx.ConnectError("prefect api down"), True), (RunAborted("1113 no balance"), False),
    (InputError("missing column"), False), (ConcurrencySlotAcquisitionError("no limit"), False),
    (AcquireConcurrencySlotTimeoutError("waited"), False), (ValueError("bug"), False),
])
def test_shards_retry_only_on_infrastructure_faults(exc: BaseException, retry: bool) -> None:
    assert is_infrastructure_fault(exc) is retry
    state: Any = Failed(data=exc)
    assert retry_on_infrastructure(extract_shard, None, state) is retry  # type: ignore[arg-type]


def test_gate_splits_the_run_share_between_shard_tasks() -> None:
    gcl = Gate(label="prefect:glm:m", name="glm:m", cap=30)
    assert gcl.slots_per_shard(30, 4) == 7
    assert gcl.slots_per_shard(200, 4) == 7  # never more than the account's limit
    assert Gate(label="x", name="x", cap=3).slots_per_shard(30, 4) == 1
    assert gcl.limiter_for(7) is not gcl.limiter_for(7)
    local = local_gate(12)
    assert local.label == LOCAL_LABEL and local.limiter_for(3) is local.limiter_for(3)
    assert local.limiter_for(3).cap == 12 and limit_name("glm-4-air-250414") == "glm:glm-4-air-250414"


def test_without_a_prefect_server_the_run_uses_a_local_limiter() -> None:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        gate = asyncio.run(choose_gate("glm-4-air-250414", 12))
    assert gate.label == LOCAL_LABEL == "local (no Prefect server)" and gate.name is None
    assert gate.limiter_for(3).cap == 12




# --- artifacts and reports ------------------------------------------------------------------------

def fake_summary() -> RunSummary:
    settings = Settings()
    prepared = prepare_run(RunRequest("ticket_qa", str(TICKETS), Path("/tmp/out.parquet")), settings)
    stats = merge_results([])
    stats.rows = 3
    stats.status_counts.update({"ok": 2, "failed": 1})
    stats.error_counts.update({"1301": 1})
    stats.error_examples["1301"] = ["T-9"]
    stats.note_answer(100.0, 1000, 200, 0.0006)
    stats.note_answer(120.0, 1500, 200, 0.0009, spent_on="reasks", cached_cny=0.0001)
    target = Target(Endpoint("http://127.0.0.1:9/api/paas/v4"), "emulator")
    return build_summary(prepared, stats, settings, target, LOCAL_LABEL, 1.5).for_partition("2026-11-25", 1)


def test_artifact_builders_say_what_a_person_needs() -> None:
    summary = fake_summary()
    rows = {r["metric"]: r["value"] for r in summary_rows(summary)}
    assert OFFLINE_NOTE in rows["endpoint"] and rows["limiter"] == LOCAL_LABEL
    assert rows["rows failed"] == "1" and "cost (CNY)" in rows and "latency p95 (ms)" in rows
    assert (rows["cost (CNY)"], rows["cost: first attempts (CNY)"], rows["cost: reasks (CNY)"],
            rows["cost: retries (CNY)"], rows["cost: cached tokens (CNY)"]) == (
        "0.001500", "0.000600", "0.000800", "0.000000", "0.000100")
    assert error_rows(summary) == [{"code": "1301", "rows": "1", "example ids": "T-9"}]
    assert error_rows(dataclasses.replace(summary, errors=()))[0]["code"] == "none"
    note = outputs_markdown(summary, evaluation="| f | 1.0 |", export="exported 3 rows")
    assert "ANSWERS ARE SYNTHETIC" in note and "/tmp/out.parquet.summary.json" in note and "Evaluation" in note
    assert "cost: 0.001500 CNY (first attempts 0.000600, retries 0.000000, reasks 0.000800, cached tokens" in note
    assert artifact_key("ticket_qa", "summary") == "glm-extract-ticket-qa-summary"


def test_failure_message_says_rerun_is_free() -> None:
    line = failure_message(RunAborted("stopped: 1113\nmore"), 3, 10)
    assert "3 of 10 shards" in line and "journal" in line and "more" not in line


def test_redact_filter_masks_the_key() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "header %s", ("Bearer sk-abc",), None)
    assert RedactFilter("sk-abc").filter(record)
    assert "sk-abc" not in record.getMessage()
    assert describe_key_source(None, SecretStr("k")) == "environment"


# --- the shard task through .fn(), then the estimate over the same journal ------------------------------

def shard_job(tmp_path: Path, input_path: Path, base_url: str,
              transport: httpx.AsyncBaseTransport) -> tuple[ShardJob, Any]:
    settings = Settings(base_url=base_url, concurrency=4, shard_size=3)
    prepared = prepare_run(RunRequest("ticket_qa", str(input_path), tmp_path / "out.parquet", new_run_id()), settings)
    plan = io.plan_output(prepared.request.output, prepared.request.run_id)
    target = Target(Endpoint(base_url), "custom", synthetic=True)  # the emulator says so (resolve_target probes)
    job = ShardJob(Run(prepared, settings, target, transport, plan), local_gate(4), 4)
    return job, io.plan_shards(prepared.info, 3)


def test_shard_task_returns_a_small_json_summary_and_the_estimate_sees_the_journal(tmp_path: Path) -> None:
    texts = ["Customer: my order 1 is late", "Customer: refund please", None, "Customer: my order 1 is late", "hi"]
    source = write_mini_tickets(tmp_path / "in.parquet", texts)
    config = EmulatorConfig(concurrency=4, latency=LatencySpec.parse("fixed:0.01"))
    with serve_in_thread(config) as emulator:
        async def go() -> tuple[list[dict[str, Any]], Any]:
            async with build_transport(concurrency=4) as transport:
                job, shards = shard_job(tmp_path, source, emulator.base_url, transport)
                with disable_run_logger():
                    return [await extract_shard.fn(job, spec) for spec in shards], job
        results, job = asyncio.run(go())
        sent = emulator.stats()["requests_received"]
        # while the emulator still answers: the estimate asks it whether it is one (its answers are keyed apart)
        estimate = estimate_run(job.run.prepared, job.run.settings, io.plan_shards(job.run.prepared.info, 3))
    assert len(orjson.dumps(results)) < 4000
    assert [r["rows"] for r in results] == [3, 2] and all(Path(r["part"]).exists() for r in results)
    stats = merge_results(results)
    assert stats.rows == 5 and stats.status_counts["skipped"] == 1 and sent == 3
    assert (estimate.rows, estimate.skipped, estimate.requests, estimate.from_journal) == (5, 1, 0, 4)


def test_concurrent_shard_tasks_pay_once_for_a_document_they_share(tmp_path: Path) -> None:
    texts = ["Customer: refund order 7", "Customer: where is order 8", "Customer: refund order 7",
             "Customer: where is order 8", "Customer: refund order 7", "Customer: cancel order 9"]
    source = write_mini_tickets(tmp_path / "in.parquet", texts)
    config = EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.3"))
    with serve_in_thread(config) as emulator:
        async def go() -> list[dict[str, Any]]:
            async with build_transport(concurrency=8) as transport:
                job, shards = shard_job(tmp_path, source, emulator.base_url, transport)
                with disable_run_logger():  # both shards' requests are on the wire at the same time
                    return list(await asyncio.gather(*(extract_shard.fn(job, spec) for spec in shards)))
        results = asyncio.run(go())
        sent = emulator.stats()["requests_received"]
    stats = merge_results(results)
    assert sent == 3 and stats.requests_sent == 3  # three distinct documents, each paid once
    assert stats.rows == 6 and stats.status_counts["ok"] == 6
    frame = pl.concat([pl.read_parquet(r["part"]) for r in results])
    assert frame.get_column("_status").to_list() == ["ok"] * 6
    assert frame.filter(pl.col("text") == "Customer: refund order 7").get_column("_request_id").n_unique() == 1


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests through; ``on_wire(n)`` is set once ``n`` requests have been sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int) -> None:
        self.inner, self.n, self.sent, self.on_wire = inner, n, 0, asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent >= self.n:
            self.on_wire.set()
        return await self.inner.handle_async_request(request)


class WatchedInflight(dict[str, "asyncio.Future[Any]"]):
    """The run's in-flight requests; ``borrowed`` is set when a shard finds one another shard is sending."""

    def __init__(self) -> None:
        super().__init__()
        self.borrowed = asyncio.Event()

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key, default)
        if found is not None:
            self.borrowed.set()
        return found


def test_a_shard_waiting_on_a_cancelled_shard_pays_itself(tmp_path: Path) -> None:
    texts = ["Customer: refund order 7", "Customer: hello", "Customer: bye", "Customer: refund order 7"]
    source = write_mini_tickets(tmp_path / "in.parquet", texts)
    config = EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.5"))
    with serve_in_thread(config) as emulator:
        async def go() -> dict[str, Any]:
            async with build_transport(concurrency=8) as transport:
                counting = CountingTransport(transport, 3)
                job, shards = shard_job(tmp_path, source, emulator.base_url, counting)
                inflight = WatchedInflight()
                job.run.shared.inflight = inflight
                with disable_run_logger():
                    first = asyncio.ensure_future(extract_shard.fn(job, shards[0]))
                    await counting.on_wire.wait()  # the first shard has its 3 requests on the wire
                    second = asyncio.ensure_future(extract_shard.fn(job, shards[1]))
                    await inflight.borrowed.wait()  # the second now waits on the first for the shared text
                    first.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await first
                    return await second
        result = asyncio.run(go())
        sent = emulator.stats()["requests_received"]
    assert result["rows"] == 1
    assert sent == 4  # 3 from the cancelled shard, then the shared text again by the one that waited
    assert result["stats"]["requests_sent"] == 1
    assert pl.read_parquet(result["part"]).get_column("_status").to_list() == ["ok"]


def test_estimate_counts_unique_requests_and_tokens(tmp_path: Path) -> None:
    source = write_mini_tickets(tmp_path / "in.parquet", ["same text", "same text", "   ", "other"])
    settings = Settings()
    prepared = prepare_run(RunRequest("ticket_qa", str(source), tmp_path / "o.parquet"), settings)
    estimate = estimate_run(prepared, settings, io.plan_shards(prepared.info, 2)).as_dict()
    assert (estimate["requests"], estimate["skipped"], estimate["from_journal"]) == (2, 1, 0)
    assert estimate["prompt_tokens"] > 100 and estimate["cost_cny"] > 0 and estimate["estimate_only"] is True
    assert not (tmp_path / "o.parquet").exists()


def test_evaluation_only_when_gold_columns_exist(tmp_path: Path) -> None:
    task = prepare_run(RunRequest("ticket_qa", str(TICKETS), tmp_path / "o.parquet"), Settings()).task
    table = pl.read_parquet(TICKETS).with_columns(
        pl.col("gold_issue_category").alias("issue_category"), pl.col("gold_sentiment").alias("sentiment"),
        pl.col("gold_resolution_status").alias("resolution_status"), pl.col("gold_risk_flags").alias("risk_flags"),
        pl.col("gold_entities").alias("entities"), pl.col("gold_language").alias("language"),
        pl.lit("ok").alias("_status"))
    table.write_parquet(tmp_path / "scored.parquet")
    markdown = evaluate_output(task, tmp_path / "scored.parquet")
    assert markdown is not None and "**1.000**" in markdown
    table.select("ticket_id", "_status").write_parquet(tmp_path / "plain.parquet")
    assert evaluate_output(task, tmp_path / "plain.parquet") is None


# --- deployments ------------------------------------------------------------------------------------

def test_prefect_yaml_mirrors_the_code_deployments() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    entries = {entry["name"]: entry for entry in config["deployments"]}
    deployments = build_deployments()
    assert {d.name for d in deployments} == set(entries) == {"nightly-ticket-qa", "financial-report-extraction"}
    for deployment in deployments:
        entry = entries[deployment.name]
        path, _, function = entry["entrypoint"].partition(":")
        assert (REPO / path).is_file() and function == str(deployment.entrypoint).rsplit(".", 1)[1]
        assert entry["parameters"] == deployment.parameters
        assert entry["concurrency_limit"] == deployment.concurrency_limit
        ExtractParams.model_validate(entry["parameters"]["params"])
        crons = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]  # type: ignore[union-attr]
        assert crons == [(s["cron"], s["timezone"]) for s in entry["schedules"]]
    assert crons == [] and entries["nightly-ticket-qa"]["schedules"][0]["timezone"] == "Asia/Shanghai"


def test_commands_refuse_to_run_without_a_prefect_server() -> None:
    app = typer.Typer()
    register(app)
    for args in (["prefect-setup"], ["serve"]):
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            done = CliRunner().invoke(app, args)
        assert done.exit_code == 2 and "PREFECT_API_URL" in " ".join(done.output.split())


def test_progress_updates_reach_the_server_in_order_when_shards_finish_together(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three shards finishing at once: the artifact must end at 100 %, whatever order the calls return in.
    (CI once saw 33 % after a complete run: the 33 % update landed after the 100 % one.)"""
    from flows import artifacts
    seen: list[float] = []

    async def slow_for_small_values(_id: object, value: float) -> None:
        await asyncio.sleep(0.03 * (100.0 - value) / 100.0)  # the earlier (smaller) value arrives last
        seen.append(value)

    monkeypatch.setattr(artifacts, "aupdate_progress_artifact", slow_for_small_values)

    async def scenario() -> None:
        report = artifacts.ProgressReport(uuid4(), 60)
        await asyncio.gather(*(report.advance(20) for _ in range(3)))

    asyncio.run(scenario())
    assert seen[-1] == 100.0 and seen == sorted(seen)
