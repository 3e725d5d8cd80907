"""A shard task that paid for answers and then failed (a full disk) is retried by Prefect: the summary's
``cost_cny`` still holds every yuan the endpoint billed, the failed attempt's answers included."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import flows.extract
import pipeline.runner
from emulator.config import EmulatorConfig
from emulator.process import serve_in_thread
from flows.extract import extract_documents, is_infrastructure_fault
from flows.limits import ensure_limit, limit_name
from flows.params import ExtractParams
from pipeline import io
from pipeline.journal import JournalBusy, JournalError
from pipeline.settings import DEFAULT_MODEL, Settings
from tests.flows.inputs import write_tickets

DECODED = {"content-encoding", "content-length", "transfer-encoding"}  # the meter hands the body on decoded


@dataclass
class Meter(httpx.AsyncBaseTransport):
    """The run's transport, reading the usage of every answer that crosses it, as the platform bills it."""

    inner: httpx.AsyncBaseTransport
    prompt: int = 0
    cached: int = 0
    completion: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        usage = orjson.loads(content).get("usage") if response.status_code == 200 else None
        if usage:
            self.prompt += usage["prompt_tokens"]
            self.completion += usage["completion_tokens"]
            self.cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in DECODED]
        return httpx.Response(response.status_code, headers=headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def billed_cny(self, settings: Settings) -> float:
        full = self.prompt - self.cached + self.completion
        return (full * settings.price_cny_per_mtok + self.cached * settings.price_cached_cny_per_mtok) / 1e6


@pytest.mark.parametrize(("exc", "retry"), [
    (ExceptionGroup("shard", [OSError(28, "disk full")]), True),
    (ExceptionGroup("shard", [OSError("disk"), ExceptionGroup("inner", [sqlite3.OperationalError("locked")])]), True),
    (ExceptionGroup("shard", [OSError("disk"), ValueError("bug")]), False),
    (JournalBusy("journal j.sqlite is locked by another process"), True),
    (JournalError("journal j.sqlite is corrupt"), False),
])
def test_a_shard_that_failed_on_infrastructure_is_retried(exc: BaseException, retry: bool) -> None:
    assert is_infrastructure_fault(exc) is retry


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_shard_retried_after_paying_keeps_its_spend_in_the_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLM_EXTRACT_SHARD_SIZE", "10")
    asyncio.run(ensure_limit(limit_name(DEFAULT_MODEL), 8))
    source = write_tickets(tmp_path / "in.parquet", 0, 30)
    meters: list[Meter] = []

    def metered(settings: Settings, concurrency: int | None = None) -> httpx.AsyncBaseTransport:
        meters.append(Meter(io_transport(settings, concurrency)))
        return meters[-1]

    io_transport = pipeline.runner.transport_for
    monkeypatch.setattr(pipeline.runner, "transport_for", metered)
    write_part, failed = io.write_part, []

    def fail_first_part(plan: io.OutputPlan, index: int, table: Any) -> Path:
        if not failed:  # after its answers were paid for and journaled: a full disk, say
            failed.append(index)
            raise OSError(28, "No space left on device")
        return write_part(plan, index, table)

    monkeypatch.setattr(io, "write_part", fail_first_part)
    monkeypatch.setattr(flows.extract, "extract_shard", flows.extract.extract_shard.with_options(retry_delay_seconds=0))
    with serve_in_thread(EmulatorConfig(concurrency=8)) as emulator:
        monkeypatch.setenv("GLM_EXTRACT_BASE_URL", emulator.base_url)
        params = ExtractParams(task="ticket_qa", input=str(source), output=str(tmp_path / "o.parquet"), concurrency=4)
        summary: dict[str, Any] = asyncio.run(extract_documents(params))
    assert failed and summary["rows"] == 30 and summary["status_counts"]["ok"] == 29  # T-0030 is blank
    assert summary["requests"]["from_journal"] >= 10  # the retried shard's rows came from the journal
    billed = meters[0].billed_cny(Settings())
    assert len(meters) == 1 and billed > 0
    assert summary["cost_cny"] == pytest.approx(billed, abs=2e-6)
    assert sum(summary["cost_split"].values()) == pytest.approx(summary["cost_cny"], abs=2e-6)
    assert summary["tokens"]["prompt"] == meters[0].prompt
