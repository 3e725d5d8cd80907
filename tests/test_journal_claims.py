"""Claims in a whole run (in process, fake GLM): keys another run claimed and then abandoned are
taken over once the claim expires, and paid once; a finished run leaves no claim behind."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.glm.client import Endpoint
from pipeline.journal import Journal
from pipeline.runner import RunRequest, Target, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from tests.fakes import FakeGLM, completion, document_of

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "who"}},
    "required": ["name"],
    "additionalProperties": False,
}
TARGET = Target(Endpoint("http://glm.test/api/paas/v4"), "custom")
ROWS = 12


def good(body: dict[str, Any]) -> Any:
    return completion(orjson.dumps({"name": document_of(body)[:12]}).decode())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    task = tmp_path / "schemas" / "mini"
    task.mkdir(parents=True)
    (task / "schema.json").write_text(json.dumps(SCHEMA))
    (task / "prompt.txt").write_text("Extract the name.\n<document>\n${body}\n</document>\n")
    (task / "task.toml").write_text('description = "mini"\nid_column = "id"\ntext_column = "body"\n'
                                    'prompt_version = "1"\n')
    pl.DataFrame({"id": [f"r{i}" for i in range(ROWS)], "body": [f"customer number {i}" for i in range(ROWS)]}
                 ).write_parquet(tmp_path / "in.parquet")
    return tmp_path


def run(ws: Path, journal: Path, output: str) -> dict[str, Any]:
    fake = FakeGLM(default=good)

    async def go() -> RunSummary:
        async with fake.transport() as transport:
            request = RunRequest("mini", str(ws / "in.parquet"), ws / output)
            settings = Settings(schemas_dir=ws / "schemas", journal_path=journal, concurrency=4, shard_size=5)
            return await asyncio.wait_for(run_extraction(request, settings, TARGET, transport=transport), 60)

    summary = asyncio.run(go()).to_dict()  # the JSON of <output>.summary.json
    summary["_fake_requests"] = len(fake.requests)
    return summary


def test_keys_an_abandoned_run_claimed_are_taken_over_when_the_claim_expires(workspace: Path) -> None:
    learned = run(workspace, workspace / "learn.sqlite", "learn.parquet")  # the keys this input asks
    keys = pl.read_parquet(workspace / "learn.parquet")["_key"].to_list()
    assert learned["_fake_requests"] == ROWS
    shared = workspace / "shared.sqlite"
    Journal(shared).close()  # an empty journal
    db = sqlite3.connect(shared)  # what a run on another machine left when it died: claims 0.5 s from expiry
    with db:
        db.executemany("INSERT INTO claims (key, owner, expires_at) VALUES (?, 'another-host:4242:0badf00d', ?)",
                       [(key, time.time() + 0.5) for key in keys[:7]])
    db.close()
    summary = run(workspace, shared, "out.parquet")
    out = pl.read_parquet(workspace / "out.parquet")
    assert out["_status"].to_list() == ["ok"] * ROWS
    assert summary["_fake_requests"] == ROWS  # each row paid once, the taken-over ones included
    assert out["_from_journal"].sum() == 0
    db = sqlite3.connect(shared)
    assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0  # nothing left claimed
    db.close()
