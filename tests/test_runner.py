"""A whole run through the engine with a fake GLM behind MockTransport (no network, no emulator)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline import io
from pipeline.errors import InputError, OutputError, RunAborted, TaskError
from pipeline.glm.client import Endpoint
from pipeline.limiter import AdaptiveLimiter
from pipeline.outcomes import STATUSES
from pipeline.runner import Run, RunRequest, ShardsDone, Target, prepare_run, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from pipeline.tokens import count_prompt_tokens
from tests.fakes import HANG, FakeGLM, completion, document_of, glm_error

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "who"},
        "amount": {"type": ["number", "null"], "description": "how much"},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "labels"},
        "detail": {"type": "object", "properties": {"urgent": {"type": "boolean", "description": "urgent?"}},
                   "required": ["urgent"],
                   "additionalProperties": False, "description": "flags"},
    },
    "required": ["name", "amount", "tags", "detail"],
    "additionalProperties": False,
}
TARGET = Target(Endpoint("http://glm.test/api/paas/v4"), "custom")


def good(body: dict[str, Any]) -> Any:
    doc = document_of(body)
    return completion(orjson.dumps({"name": doc[:10], "amount": float(len(doc)), "tags": ["a", doc[:3]],
                                    "detail": {"urgent": "!" in doc}}).decode())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    task = tmp_path / "schemas" / "mini"
    task.mkdir(parents=True)
    (task / "schema.json").write_text(json.dumps(SCHEMA))
    (task / "prompt.txt").write_text("Extract.\n<document>\n${body}\n</document>\n")
    (task / "task.toml").write_text('description = "mini"\nid_column = "id"\ntext_column = "body"\n'
                                    'prompt_version = "1"\nmax_input_chars = 200\n')
    pl.DataFrame({
        "id": [f"r{i}" for i in range(7)],
        "body": ["hello world", "urgent!", None, "   ", "hello world", "x" * 300, "third row"],
        "n": list(range(7)),
    }).write_parquet(tmp_path / "in.parquet")
    return tmp_path


def settings(ws: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {"schemas_dir": ws / "schemas", "journal_path": ws / "journal.sqlite", "concurrency": 3,
                            "shard_size": 3, "backoff_initial_s": 0.001, "backoff_max_s": 0.002}
    return Settings(**{**base, **extra})


def run(ws: Path, fake: FakeGLM, *, output: str = "out.parquet", **extra: Any) -> RunSummary:
    async def go() -> RunSummary:
        async with fake.transport() as transport:
            request = RunRequest("mini", str(ws / "in.parquet"), ws / output)
            return await run_extraction(request, settings(ws, **extra), TARGET, transport=transport)
    return asyncio.run(go())


def test_one_typed_row_out_per_row_in(workspace: Path) -> None:
    fake = FakeGLM(default=good)
    summary = run(workspace, fake)
    out = pl.read_parquet(workspace / "out.parquet")
    assert out.height == 7 and out["id"].to_list() == [f"r{i}" for i in range(7)]
    assert out["_status"].to_list() == ["ok", "ok", "skipped", "skipped", "ok", "failed", "ok"]
    assert out.schema["detail"] == pl.Struct({"urgent": pl.Boolean})
    assert out.schema["tags"] == pl.List(pl.String) and out.schema["amount"] == pl.Float64
    assert out.filter(pl.col("id") == "r1")["detail"].struct.field("urgent").to_list() == [True]
    assert out["_error_code"][5] == "input_too_long"
    # duplicate text under two ids is paid once
    assert len(fake.requests) == 3 and summary.requests.sent == 3
    assert out["_from_journal"].to_list()[4] is True and out["_cost_cny"][4] == 0
    assert summary.status_counts == {"ok": 4, "invalid": 0, "failed": 1, "filtered": 0, "skipped": 2}
    assert summary.tokens.prompt == 300 == out["_prompt_tokens"].sum()
    written = json.loads((workspace / "out.parquet.summary.json").read_text())
    assert written["run_id"] == summary.run_id == out["_run_id"][0]


def contract_keys() -> set[str]:
    """Every key the summary example of docs/contracts.md §4 names, nested ones as ``parent.key``."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text()
    block = text.split("## 4.")[1].split("```json")[1].split("```")[0]
    example = json.loads(re.sub(r'("[^"]*")(\s*\|\s*"[^"]*")+', r"\1", block))  # "a" | "b": one of them
    return keys_of(example)


def keys_of(data: dict[str, Any], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, value in data.items():
        found.add(prefix + name)
        if isinstance(value, dict) and name != "status_counts":
            found |= keys_of(value, f"{prefix}{name}.")
    return found


def test_the_summary_file_is_the_typed_summary_with_the_contracts_keys(workspace: Path) -> None:
    summary = run(workspace, FakeGLM(default=good))
    written = json.loads((workspace / "out.parquet.summary.json").read_text())
    assert written == summary.to_dict()
    assert RunSummary.from_dict(written) == summary  # what a reader gets back is what the run had
    assert keys_of(written) == contract_keys()
    assert list(written["status_counts"]) == list(STATUSES)
    examples = {e["code"]: (e["count"], sorted(e["example_ids"])) for e in written["errors"]}  # shards end in any order
    assert examples == {"empty_text": (2, ["r2", "r3"]), "input_too_long": (1, ["r5"])}


def test_second_run_makes_no_request(workspace: Path) -> None:
    run(workspace, FakeGLM(default=good))
    first = pl.read_parquet(workspace / "out.parquet")
    again = FakeGLM(default=glm_error(500, "500"))
    summary = run(workspace, again, output="out2.parquet")
    assert again.requests == [] and summary.requests.sent == 0 and summary.cost_cny == 0
    second = pl.read_parquet(workspace / "out2.parquet")
    keep = ["id", "name", "amount", "tags", "detail", "_status", "_key"]
    assert second.select(keep).equals(first.select(keep))


def test_fences_repaired_and_reask_carries_validator_errors(workspace: Path) -> None:
    def answers(body: dict[str, Any]) -> Any:
        if len(body["messages"]) == 2 and "urgent" in document_of(body):
            return completion('{"name": "u", "amount": "lots", "tags": [], "detail": {"urgent": true}}')
        reply = good(body)
        content = orjson.loads(reply.content)["choices"][0]["message"]["content"]
        return completion(f"```json\n{content}\n```\nThat is all.")

    fake = FakeGLM(default=answers)
    summary = run(workspace, fake)
    reasks = [r for r in fake.requests if len(r["messages"]) == 4]
    assert len(reasks) == 1
    assert "/amount" in reasks[0]["messages"][3]["content"]
    out = pl.read_parquet(workspace / "out.parquet")
    assert out.filter(pl.col("id") == "r1")["_reasks"].to_list() == [1]
    assert (out["_status"] == "ok").sum() == 4 and summary.requests.reasks == 1


def test_invalid_after_bounded_reasks(workspace: Path) -> None:
    fake = FakeGLM(default=completion('{"name": 1}'))
    run(workspace, fake, max_reasks=2)
    out = pl.read_parquet(workspace / "out.parquet")
    assert set(out["_status"].to_list()) == {"invalid", "skipped", "failed"}
    assert out.filter(pl.col("_status") == "invalid")["_reasks"].to_list() == [2, 2, 0, 2]  # dup: unpaid
    assert len(fake.requests) == 9  # 3 distinct requests × (1 + 2 re-asks)
    assert out.filter(pl.col("_status") == "invalid")["name"].null_count() == 4


def test_1301_filtered_and_sensitive_finish(workspace: Path) -> None:
    def answers(body: dict[str, Any]) -> Any:
        doc = document_of(body)
        if doc.startswith("hello"):
            return glm_error(400, "1301", "unsafe")
        if doc.startswith("urgent"):
            return completion("{", finish_reason="sensitive")
        return good(body)

    run(workspace, FakeGLM(default=answers))
    out = pl.read_parquet(workspace / "out.parquet")
    assert out["_status"].to_list() == ["filtered", "filtered", "skipped", "skipped", "filtered", "failed", "ok"]
    assert out["_error_code"].to_list()[:2] == ["1301", "sensitive"]


def test_fatal_1113_aborts_without_output_and_keeps_journal(workspace: Path) -> None:
    def answers(body: dict[str, Any]) -> Any:
        return glm_error(429, "1113", "Insufficient balance") if "third" in document_of(body) else good(body)

    def later_for_third(body: dict[str, Any]) -> float:  # the two good answers arrive before the 1113
        return 0.5 if "third" in document_of(body) else 0.001  # wide margin: the box may be busy

    fake = FakeGLM(default=answers, delay_s=later_for_third)
    with pytest.raises(RunAborted, match="recharge"):
        run(workspace, fake, shard_size=100)
    assert len(fake.requests) == 3 and fake.max_in_flight == 3
    assert not (workspace / "out.parquet").exists()
    assert not list(workspace.glob(".out.parquet.parts-*"))
    resumed = FakeGLM(default=good)
    run(workspace, resumed)
    # what was answered before the abort is not paid again; the refused row is
    assert [document_of(body) for body in resumed.requests] == ["third row"]


def test_a_fatal_stop_cancels_requests_hung_on_the_wire(workspace: Path) -> None:
    pl.DataFrame({"id": [f"h{i}" for i in range(40)], "body": [f"doc {i}" for i in range(40)]}).write_parquet(
        workspace / "in.parquet")

    def answers(body: dict[str, Any]) -> Any:
        return glm_error(429, "1113", "Insufficient balance") if document_of(body) == "doc 7" else HANG

    def later_for_fatal(body: dict[str, Any]) -> float:  # every other request is hung by then
        return 1.0 if document_of(body) == "doc 7" else 0.0  # wide margin: the box may be busy

    fake = FakeGLM(default=answers, delay_s=later_for_fatal)

    async def go() -> float:
        async with fake.transport() as transport:
            request = RunRequest("mini", str(workspace / "in.parquet"), workspace / "out.parquet")
            clock = time.perf_counter()
            with pytest.raises(RunAborted, match="recharge"):
                await run_extraction(request, settings(workspace, concurrency=30, shard_size=100), TARGET,
                                     transport=transport)
            return time.perf_counter() - clock

    seconds = asyncio.run(asyncio.wait_for(go(), timeout=20))  # hung requests never answer by themselves
    assert seconds < 5, f"the stop waited {seconds:.1f} s for hung requests"
    assert fake.max_in_flight == 30 and fake.cancelled == 29 and fake.in_flight == 0
    assert len(fake.requests) == 30  # nothing was sent after the fatal answer
    resumed = FakeGLM(default=good)
    run(workspace, resumed, concurrency=30, shard_size=100)
    assert len(resumed.requests) == 40  # cancelled rows were never journaled as answered


def test_rows_held_up_do_not_hold_the_next_shards_back(workspace: Path) -> None:
    rows = 200
    pl.DataFrame({"id": [f"s{i}" for i in range(rows)], "body": [f"doc {i}" for i in range(rows)]}).write_parquet(
        workspace / "in.parquet")

    def slow_first_of_each_shard(body: dict[str, Any]) -> float:  # e.g. a row waiting out a long answer
        return 0.5 if int(document_of(body).split()[1]) % 10 == 0 else 0.02

    fake = FakeGLM(default=good, delay_s=slow_first_of_each_shard)
    summary = run(workspace, fake, concurrency=30, shard_size=10)
    assert summary.count("ok") == rows
    assert fake.max_in_flight == 30  # shard boundaries never leave slots idle
    answered = [document_of(body) for body in fake.answered]
    fast_before_first_slow = answered.index("doc 0")
    assert fast_before_first_slow >= 50, answered[:fast_before_first_slow + 1]  # not just two shards' worth


@pytest.mark.parametrize(
    ("mutate", "error", "needle"),
    [
        (lambda ws: (ws / "in.parquet").unlink(), InputError, "input not found"),
        (lambda ws: (ws / "in.parquet").write_text("id,body\n1,x\n"), InputError, "not a readable Parquet"),
        (lambda ws: pl.DataFrame({"id": ["a", "a"], "body": ["x", "y"]}).write_parquet(ws / "in.parquet"),
         InputError, "duplicate value 'a'"),
        (lambda ws: pl.DataFrame({"id": ["a", None], "body": ["x", "y"]}).write_parquet(ws / "in.parquet"),
         InputError, "null at row 1"),
        (lambda ws: pl.DataFrame({"id": ["a"], "text": ["x"]}).write_parquet(ws / "in.parquet"),
         InputError, "missing column 'body'"),
        (lambda ws: pl.DataFrame({"id": ["a"], "body": [3]}).write_parquet(ws / "in.parquet"),
         InputError, "expected string"),
        (lambda ws: (ws / "schemas" / "mini" / "schema.json").write_text("{nope"), TaskError, "not valid JSON"),
        (lambda ws: (ws / "schemas" / "mini" / "schema.json").write_text('{"type": 5}'), TaskError,
         "not a valid JSON Schema"),
        (lambda ws: (ws / "schemas" / "mini" / "prompt.txt").write_text("Document: ${body}\n"),
         TaskError, "inside a <document>"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    workspace: Path, mutate: Any, error: type, needle: str
) -> None:
    mutate(workspace)
    fake = FakeGLM(default=good)
    with pytest.raises(error, match=needle):
        run(workspace, fake)
    assert fake.requests == [] and not (workspace / "out.parquet").exists()
    assert sorted(p.name for p in workspace.iterdir() if p.name.startswith(".out")) == []


def test_unwritable_output_is_refused_before_spending(workspace: Path) -> None:
    fake = FakeGLM(default=good)
    with pytest.raises(OutputError, match="does not exist"):
        run(workspace, fake, output="missing/out.parquet")
    assert fake.requests == []


def test_empty_input_gives_an_empty_typed_table(workspace: Path) -> None:
    pl.DataFrame({"id": [], "body": []}, schema={"id": pl.String, "body": pl.String}).write_parquet(
        workspace / "in.parquet"
    )
    summary = run(workspace, FakeGLM())
    out = pl.read_parquet(workspace / "out.parquet")
    assert out.height == 0 and out.schema["detail"] == pl.Struct({"urgent": pl.Boolean})
    assert summary.rows == 0


def test_a_budget_below_one_request_s_worst_case_sends_nothing(workspace: Path) -> None:
    fake = FakeGLM(default=good)
    summary = run(workspace, fake, concurrency=1, shard_size=100, budget_cny=0.00001)
    out = pl.read_parquet(workspace / "out.parquet")
    assert fake.requests == []  # one request may cost (prompt + 4,096 answer tokens) × price > 0.00001 CNY
    assert out.filter(pl.col("_error_code") == "budget_reached").height == 4  # r0, r1, r4 (same text), r6
    assert summary.count("skipped") == 2 + 4 and summary.cost_cny == 0


def honest(body: dict[str, Any]) -> Any:
    """Good answers whose usage is what the platform's rule of thumb counts for the prompt."""
    answer = orjson.loads(good(body).content)["choices"][0]["message"]["content"]
    return completion(answer, prompt_tokens=count_prompt_tokens(body["messages"]), completion_tokens=150)


@pytest.mark.parametrize("budget", [0.004, 0.011])
def test_the_budget_is_never_overspent_with_30_requests_in_flight(workspace: Path, budget: float) -> None:
    rows = 400
    pl.DataFrame({"id": [f"b{i}" for i in range(rows)], "body": [f"document number {i}" for i in range(rows)]}
                 ).write_parquet(workspace / "in.parquet")
    fake = FakeGLM(default=honest, delay_s=0.02)
    summary = run(workspace, fake, concurrency=30, shard_size=50, max_tokens=200, budget_cny=budget)
    out = pl.read_parquet(workspace / "out.parquet")
    paid = sum(count_prompt_tokens(body["messages"]) + 150 for body in fake.requests) * 0.5 / 1e6  # the bill
    assert paid <= budget
    assert summary.cost_cny == pytest.approx(paid, abs=1e-6) == out["_cost_cny"].sum()
    worst = (count_prompt_tokens(fake.requests[0]["messages"]) * 1.25 + 200) * 0.5 / 1e6
    assert paid > budget - 2 * worst  # it spent the budget, not a token of it
    assert fake.max_in_flight > 5  # reservations settle as answers come: the window stays open
    sent = len(fake.requests)
    assert (out["_status"] == "ok").sum() == sent < rows
    skipped = out.filter(pl.col("_status") == "skipped")
    assert skipped.height == rows - sent and set(skipped["_error_code"]) == {"budget_reached"}


def test_summary_splits_cost_into_first_attempts_retries_and_reasks(workspace: Path) -> None:
    def answers(body: dict[str, Any]) -> Any:
        doc = document_of(body)
        if doc == "urgent!" and len(body["messages"]) == 2:
            return completion('{"name": 1}', prompt_tokens=1000, completion_tokens=0)  # invalid: re-asked
        if doc == "third row" and sum(document_of(b) == doc for b in fake.requests) == 1:
            return glm_error(500, "500")  # answered on the second attempt
        reply = orjson.loads(good(body).content)["choices"][0]["message"]["content"]
        tokens = {"hello world": 10_000, "urgent!": 200_000, "third row": 30_000}[doc]
        cached = 40_000 if doc == "third row" else 0  # of the prompt tokens, served from the cache
        return completion(reply, prompt_tokens=tokens + cached, completion_tokens=0, cached_tokens=cached)

    fake = FakeGLM(default=answers)
    summary = run(workspace, fake, price_cached_cny_per_mtok=0.1)
    assert summary.to_dict()["cost_split"] == {"first_attempts": 0.0055, "retries": 0.015, "reasks": 0.1,
                                     "cached_tokens": 0.004}
    assert summary.cost_cny == pytest.approx(0.0055 + 0.015 + 0.1 + 0.004)


def test_free_form_fields_become_json_text(workspace: Path) -> None:
    schema = json.loads((workspace / "schemas" / "mini" / "schema.json").read_text())
    schema["properties"]["extra"] = {"type": "object", "description": "anything"}
    schema["required"].append("extra")
    (workspace / "schemas" / "mini" / "schema.json").write_text(json.dumps(schema))

    def answers(body: dict[str, Any]) -> Any:
        data = orjson.loads(orjson.loads(good(body).content)["choices"][0]["message"]["content"])
        return completion(orjson.dumps({**data, "extra": {"k": [1, 2]}}).decode())

    run(workspace, FakeGLM(default=answers))
    out = pl.read_parquet(workspace / "out.parquet")
    assert out.schema["extra"] == pl.String
    assert json.loads(out["extra"][0]) == {"k": [1, 2]}


def test_unknown_4xx_is_not_kept_for_good(workspace: Path) -> None:
    run(workspace, FakeGLM(default=glm_error(404, "404", "no such path")))
    out = pl.read_parquet(workspace / "out.parquet")
    assert set(out["_status"]) == {"failed", "skipped"}
    fixed = FakeGLM(default=good)
    run(workspace, fixed, output="again.parquet")
    assert len(fixed.requests) == 3  # asked again once the endpoint is right


def test_emulator_answers_never_stand_in_for_real_ones(workspace: Path) -> None:
    async def go(target: Target, fake: FakeGLM, output: str) -> RunSummary:
        async with fake.transport() as transport:
            request = RunRequest("mini", str(workspace / "in.parquet"), workspace / output)
            return await run_extraction(request, settings(workspace), target, transport=transport)

    asyncio.run(go(Target(Endpoint("http://127.0.0.1:1/api/paas/v4"), "emulator"), FakeGLM(default=good), "a.parquet"))
    real = FakeGLM(default=good)
    asyncio.run(go(TARGET, real, "b.parquet"))
    assert len(real.requests) == 3


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(workspace: Path) -> None:
    plan = io.plan_output(workspace / "out.parquet", "first")
    try:
        fake = FakeGLM(default=good)
        with pytest.raises(OutputError, match="being written by another run"):
            run(workspace, fake)
        assert fake.requests == [] and plan.parts_dir.is_dir()  # the live run's parts survive
    finally:
        io.discard_parts(plan)
    run(workspace, FakeGLM(default=good))  # released: the next run goes ahead
    assert (workspace / "out.parquet").exists()
    assert not (workspace / ".out.parquet.lock").exists()


def test_a_run_driven_shard_by_shard_writes_what_a_run_in_one_go_writes(workspace: Path) -> None:
    """The flow's way (each shard task calls ``Run.shard``) and the CLI's (``run_extraction``) are
    one run path: the same rows, statuses, answers and summary counts."""
    whole = run(workspace, FakeGLM(default=good), output="whole.parquet")

    async def by_shard() -> RunSummary:
        config = settings(workspace, journal_path=workspace / "other.sqlite")
        prepared = prepare_run(RunRequest("mini", str(workspace / "in.parquet"), workspace / "sharded.parquet"),
                               config)
        async with FakeGLM(default=good).transport() as transport, \
                Run.open(prepared, config, TARGET, transport=transport) as one_run:
            done = [await one_run.shard(spec, AdaptiveLimiter(2)) for spec in io.plan_shards(prepared.info, 2)]
            return one_run.finish(ShardsDone.merged(done), "per shard")

    sharded = asyncio.run(by_shard())
    assert sharded.status_counts == whole.status_counts and sharded.requests == whole.requests
    assert (sharded.tokens, sharded.errors, sharded.limiter) == (whole.tokens, whole.errors, "per shard")
    columns = ["id", "name", "amount", "tags", "detail", "_status", "_error_code", "_from_journal"]
    assert pl.read_parquet(workspace / "sharded.parquet").select(columns).equals(
        pl.read_parquet(workspace / "whole.parquet").select(columns))
    assert not list(workspace.glob(".sharded.parquet*"))  # no parts or lock left behind


def test_a_run_that_does_not_finish_leaves_no_parts_and_no_output(workspace: Path) -> None:
    async def interrupted() -> None:
        config = settings(workspace)
        prepared = prepare_run(RunRequest("mini", str(workspace / "in.parquet"), workspace / "out.parquet"), config)
        async with FakeGLM(default=good).transport() as transport, \
                Run.open(prepared, config, TARGET, transport=transport) as one_run:
            await one_run.shard(io.plan_shards(prepared.info, 3)[0], AdaptiveLimiter(2))
            assert list(one_run.plan.parts_dir.iterdir())  # a part was written ...
            raise KeyboardInterrupt  # ... and the run stops before finishing

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(interrupted())
    assert sorted(p.name for p in workspace.iterdir()) == ["in.parquet", "journal.sqlite", "schemas"]


def test_a_task_bounds_its_answers_and_an_explicit_setting_overrides_it(workspace: Path) -> None:
    toml = workspace / "schemas" / "mini" / "task.toml"
    toml.write_text(toml.read_text() + "max_tokens = 700\n")
    fake = FakeGLM(default=good)
    run(workspace, fake)
    assert {r["max_tokens"] for r in fake.requests} == {700}  # a runaway answer stops at the task's bound
    again = FakeGLM(default=good)
    run(workspace, again, output="explicit.parquet", max_tokens=300)
    assert {r["max_tokens"] for r in again.requests} == {300}  # a new bound is a new request: paid again


def test_a_task_max_tokens_beyond_the_models_is_refused(workspace: Path) -> None:
    toml = workspace / "schemas" / "mini" / "task.toml"
    toml.write_text(toml.read_text() + "max_tokens = 20000\n")
    with pytest.raises(TaskError, match="'max_tokens' must be between 1 and 16384"):
        run(workspace, FakeGLM(default=good))
