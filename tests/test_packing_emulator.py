"""The emulator over HTTP answers packed requests one record per item; on the realistic profile some
records come back missing or invalid (so the pipeline's re-ask-alone path is exercised), and every
record it does give is the row's own answer."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import polars as pl

from emulator import EmulatorConfig, LatencySpec, answer_request, serve_in_thread
from pipeline.packing import label, render_packed_request, split_answer
from pipeline.prompts import RenderOptions, render_request
from pipeline.tasks import load_task
from pipeline.validate import Reask, Valid, compile_validator
from tests.conftest import SAMPLE, SCHEMAS

OPTIONS = RenderOptions(model="glm-4-air-250414")
PACK = 5


def _rows() -> list[dict[str, Any]]:
    frame = pl.read_parquet(SAMPLE / "tickets.parquet")
    rows = [{"text": t, "channel": c} for t, c in zip(frame["text"], frame["channel"], strict=True)]
    # enough distinct packs for the per-record rates to show: the sample in several shifted orders
    return [{**row, "text": f"{row['text']} (copy {n})"} for n in range(8) for row in rows]


def _post(client: httpx.Client, base_url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    response = client.post(f"{base_url}/chat/completions", json=body, headers={"Authorization": "Bearer test.key"})
    return response.json() if response.status_code == 200 else None  # request-level faults: not this test's


def test_packed_requests_over_http_get_per_record_faults_on_the_realistic_profile() -> None:
    task = load_task("ticket_qa", SCHEMAS)
    validator = compile_validator(task.schema)
    rows = _rows()
    packs = [rows[i : i + PACK] for i in range(0, len(rows) - PACK + 1, PACK)]
    config = EmulatorConfig.for_profile("realistic", latency=LatencySpec(), load_slowdown=0.0, concurrency=64)
    counts = {"valid": 0, "pack_missing": 0, "pack_invalid": 0}
    with serve_in_thread(config) as emu, httpx.Client(timeout=30) as client:
        for pack in packs:
            payload = _post(client, emu.base_url, render_packed_request(task, pack, OPTIONS))
            if payload is None:
                continue
            choice = payload["choices"][0]
            verdicts = split_answer(choice["message"]["content"], choice["finish_reason"], len(pack), validator)
            for row, verdict in zip(pack, verdicts, strict=True):
                if isinstance(verdict, Valid):
                    counts["valid"] += 1
                    assert verdict.data == answer_request(render_request(task, row, OPTIONS)).instance
                elif isinstance(verdict, Reask) and verdict.code in counts:
                    counts[verdict.code] += 1
    assert counts["valid"] > 0.8 * len(rows)
    assert counts["pack_missing"] > 0 and counts["pack_invalid"] > 0, counts


def test_the_clean_profile_answers_every_record() -> None:
    task = load_task("ticket_qa", SCHEMAS)
    pack = _rows()[:PACK]
    with serve_in_thread(EmulatorConfig()) as emu, httpx.Client(timeout=30) as client:
        payload = _post(client, emu.base_url, render_packed_request(task, pack, OPTIONS))
    assert payload is not None
    answer = orjson.loads(payload["choices"][0]["message"]["content"])
    assert sorted(answer) == sorted(label(i) for i in range(PACK))
    validator = compile_validator(task.schema)
    assert all(validator.is_valid(record) for record in answer.values())
