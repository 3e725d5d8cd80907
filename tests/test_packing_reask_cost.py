"""A row whose record a packed answer left out is asked again alone: that request is a re-ask, and the
run summary books it as one (``cost_split.reasks``, ``requests.reasks``), not as a first attempt.
Rows a packing run could not claim at once (another run held them) are packed like the rest when it
claims them at a later look, not sent one by one."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

from pipeline.glm.client import Endpoint
from pipeline.journal import Journal
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from tests.fakes import FakeGLM, completion, document_of
from tests.names_task import write_names_task

PRICE = 0.5  # CNY per million tokens (the settings' default)
PACK_USAGE, ALONE_USAGE = (300, 30), (100, 20)


def cny(usage: tuple[int, int]) -> float:
    return sum(usage) * PRICE / 1e6


def leaves_the_last_record_out(body: dict[str, Any]) -> httpx.Response:
    """A packed request is answered for every item but its last; a request alone is answered."""
    user = body["messages"][1]["content"]
    labels = [f"d{n}" for n in range(1, user.count('<item id="') + 1)]
    if not labels:
        return completion(orjson.dumps({"name": document_of(body)}).decode(),
                          prompt_tokens=ALONE_USAGE[0], completion_tokens=ALONE_USAGE[1])
    records = {item: {"name": f"record {item}"} for item in labels[:-1]}
    return completion(orjson.dumps(records).decode(), prompt_tokens=PACK_USAGE[0], completion_tokens=PACK_USAGE[1])


@pytest.fixture
def packing_task(tmp_path: Path) -> Path:
    write_names_task(tmp_path, "pack_tokens = 3000\npack_max = 10\n")
    pl.DataFrame({"id": ["r1", "r2", "r3"], "body": ["Ann wrote", "Bob wrote", "Cy wrote"]}).write_parquet(
        tmp_path / "in.parquet")
    return tmp_path


def run(ws: Path, fake: FakeGLM, journal: str = "journal.sqlite", output: str = "out.parquet") -> RunSummary:
    async def go() -> RunSummary:
        async with fake.transport() as transport:
            settings = Settings(schemas_dir=ws / "schemas", journal_path=ws / journal,
                                price_cny_per_mtok=PRICE, price_cached_cny_per_mtok=PRICE)
            request = RunRequest("names", str(ws / "in.parquet"), ws / output)
            return await run_extraction(request, settings, Target(Endpoint("http://glm.test/api/paas/v4"), "custom"),
                                        transport=transport)
    return asyncio.run(go())


def test_a_row_asked_again_alone_after_its_pack_is_booked_as_a_reask(packing_task: Path) -> None:
    fake = FakeGLM(default=leaves_the_last_record_out)
    summary = run(packing_task, fake)
    rows = pl.read_parquet(packing_task / "out.parquet").sort("id")
    assert len(fake.answered) == 2 and rows["_packed"].to_list() == [True, True, False]  # r3 was asked alone
    assert rows["_status"].to_list() == ["ok", "ok", "ok"] and rows["name"][2] == "Cy wrote"
    assert summary.cost_cny == pytest.approx(cny(PACK_USAGE) + cny(ALONE_USAGE), abs=1e-9)
    assert summary.cost_split.first_attempts == pytest.approx(cny(PACK_USAGE), abs=1e-9)
    assert summary.cost_split.reasks == pytest.approx(cny(ALONE_USAGE), abs=1e-9)
    assert summary.requests.reasks == 1 and rows["_reasks"].to_list() == [0, 0, 1]
    assert summary.estimate.requests == 3  # each row's first request (the pack) answered once


def test_rows_taken_over_from_an_abandoned_run_are_packed(packing_task: Path) -> None:
    run(packing_task, FakeGLM(default=leaves_the_last_record_out), "learn.sqlite", "learn.parquet")
    keys = pl.read_parquet(packing_task / "learn.parquet")["_key"].to_list()
    Journal(packing_task / "shared.sqlite").close()
    db = sqlite3.connect(packing_task / "shared.sqlite")  # a run on another machine claimed every row, then died
    with db:
        db.executemany("INSERT INTO claims (key, owner, expires_at) VALUES (?, 'another-host:4242:0badf00d', ?)",
                       [(key, time.time() + 0.5) for key in keys])
    db.close()
    fake = FakeGLM(default=leaves_the_last_record_out)
    summary = run(packing_task, fake, "shared.sqlite")
    rows = pl.read_parquet(packing_task / "out.parquet").sort("id")
    assert rows["_status"].to_list() == ["ok", "ok", "ok"]
    assert rows["_packed"].to_list() == [True, True, False]  # as in a run that claimed them at once
    assert len(fake.answered) == 2 and summary.requests.sent == 2
