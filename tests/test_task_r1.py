"""Review r1, task loading, rejudge and answer typing, as a user meets them through the CLI against a
fake GLM over real HTTP (tests.fakes.serve_glm):

- ``rejudge`` judges only the answers asked under the task's current schema (F1): an answer keyed
  under another schema keeps the verdict of the schema it was asked under;
- a schema property named like a meta column (``_status``) is refused at load, before anything is
  paid (F4);
- an ``integer`` answer beyond int64 never makes an ``ok`` row with a null (F8);
- an unknown ``task.toml`` key (a typo) is refused, naming the key and the nearest known one (F14).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.errors import TaskError
from pipeline.journal import Journal
from pipeline.tables import RowMeta, RunColumns, assemble_shard
from tests.fakes import document_of, serve_glm
from tests.reliability.support import cli_env, one_error_line, run_cli, summary_of, ticket_frame

CLI = [sys.executable, "-m", "pipeline.cli"]
ROWS = 5
TOML = ('description = "r1"\nid_column = "ticket_id"\ntext_column = "text"\nprompt_version = "2026-11-30.1"\n'
        'instructions = "x"\n')
PROMPT = "<document>\n${text}\n</document>\n"


def write_task(schemas: Path, name: str, properties: dict[str, Any], *, toml: str = TOML) -> Path:
    folder = schemas / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text(toml)
    (folder / "prompt.txt").write_text(PROMPT)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "additionalProperties": False, "required": list(properties), "properties": properties}
    (folder / "schema.json").write_text(json.dumps(schema))
    return folder


def described(**node: Any) -> dict[str, Any]:
    return {"description": "a field", **node}


def write_input(tmp_path: Path, rows: int = ROWS) -> Path:
    path = tmp_path / "in.parquet"
    ticket_frame(rows).write_parquet(path)
    return path


@contextmanager
def glm_answering(content: Callable[[dict[str, Any]], str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with serve_glm(lambda body: (content(body), 100, 20)) as served:
        yield served


def cli(tmp_path: Path, *args: str) -> Any:
    return run_cli([*CLI, *args], cli_env(tmp_path / "j.sqlite", COLUMNS="1000"))  # `tasks` lines unwrapped


def run(tmp_path: Path, schemas: Path, task: str, output: str, base_url: str, *extra: str) -> Any:
    return cli(tmp_path, "run", "--task", task, "--schemas-dir", str(schemas), "--input", str(write_input(tmp_path)),
               "--output", str(tmp_path / output), "--base-url", base_url, "-q", *extra)


def statuses(tmp_path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT status, count(*) FROM results GROUP BY status").fetchall())
    finally:
        db.close()


# ---- F1: rejudge judges only the answers asked under the current schema -------------------------

ENUM = described(type="string", enum=["orderpizza", "getboardingpass", "other"])


@pytest.mark.parametrize(("asked", "rejudged_under", "kept"), [
    (ENUM, described(type="string"), "invalid"),  # loosened: the enum schema's rows must stay invalid
    (described(type="string"), ENUM, "ok"),  # tightened: the plain schema's good answers must stay ok
], ids=["loosened", "tightened"])
def test_rejudge_leaves_answers_asked_under_another_schema(tmp_path: Path, asked: dict[str, Any],
                                                           rejudged_under: dict[str, Any], kept: str) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    write_task(before, "intent", {"intent": asked})
    write_task(after, "intent", {"intent": rejudged_under})
    with glm_answering(lambda _: '{"intent": "other_value"}') as (base_url, received):
        first = run(tmp_path, before, "intent", "o1.parquet", base_url, "--max-reasks", "0")
        assert first.returncode == 0, first.stderr
        assert statuses(tmp_path) == {kept: ROWS}
        changed = cli(tmp_path, "rejudge", "--task", "intent", "--schemas-dir", str(after))
        assert changed.returncode == 0, changed.stderr
        assert f"left {ROWS} stored verdicts of another schema" in changed.stdout, changed.stdout
        assert "judged 0 stored answers" in changed.stdout, changed.stdout
        assert statuses(tmp_path) == {kept: ROWS}
        sent = len(received)
        again = run(tmp_path, before, "intent", "o2.parquet", base_url, "--max-reasks", "0")
        assert again.returncode == 0, again.stderr
        assert len(received) == sent  # every row from the journal
    frame = pl.read_parquet(tmp_path / "o2.parquet")
    assert frame["_status"].to_list() == [kept] * ROWS
    assert frame["_from_journal"].all()
    own = cli(tmp_path, "rejudge", "--task", "intent", "--schemas-dir", str(before))  # its own schema: judged
    assert own.returncode == 0 and f"judged {ROWS} stored answers" in own.stdout, own.stdout + own.stderr
    assert "another schema" not in own.stdout and "changed 0 verdicts" in own.stdout, own.stdout


# ---- F4: a property named like a meta column ----------------------------------------------------

@pytest.mark.parametrize("name", ["_status", "_note"])
def test_a_property_starting_with_underscore_is_refused_before_anything_is_paid(tmp_path: Path, name: str) -> None:
    schemas = tmp_path / "schemas"
    folder = write_task(schemas, "us", {"intent": described(type="string"), name: described(type="string")})
    listed = cli(tmp_path, "tasks", "--schemas-dir", str(schemas))
    assert listed.returncode == 2 and f"{folder / 'schema.json'}: property {name!r}" in listed.stdout, listed.stdout
    with glm_answering(lambda _: json.dumps({"intent": "x", name: "y"})) as (base_url, received):
        done = run(tmp_path, schemas, "us", "o.parquet", base_url)
    line = one_error_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert str(folder / "schema.json") in line and repr(name) in line, line
    assert received == []
    assert not (tmp_path / "j.sqlite").exists() or statuses(tmp_path) == {}


def test_a_nested_property_starting_with_underscore_loads(tmp_path: Path) -> None:
    """Nested names become struct fields, which cannot meet a meta column."""
    schemas = tmp_path / "schemas"
    write_task(schemas, "nested", {"box": described(type="object", additionalProperties=False, required=["_x"],
                                                    properties={"_x": described(type="string")})})
    with glm_answering(lambda _: '{"box": {"_x": "kept"}}') as (base_url, _):
        done = run(tmp_path, schemas, "nested", "o.parquet", base_url)
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(tmp_path / "o.parquet")["box"].struct.field("_x").to_list() == ["kept"] * ROWS


# ---- F8: integers beyond int64 ------------------------------------------------------------------

INTEGERS = {"n": described(type="integer"), "maybe": described(type=["integer", "null"]),
            "many": described(type="array", items={"type": "integer"})}
INT64_MAX = 2**63 - 1


def _integer_answer(body: dict[str, Any]) -> str:
    """Row 0 (its text ends "(ref 0)") gets a 20-digit ``n``, row 1 one in ``maybe``, row 2 one in a
    list; every other row the largest int64, which must arrive whole. The first answer to a row only:
    a re-ask (more than one user message) gets a fitting answer."""
    document = document_of(body)
    huge = "99999999999999999999"
    if len(body["messages"]) > 2:
        return '{"n": 1, "maybe": null, "many": [1]}'
    if document.endswith("(ref 0)"):
        return f'{{"n": {huge}, "maybe": 1, "many": []}}'
    if document.endswith("(ref 1)"):
        return f'{{"n": 1, "maybe": {huge}, "many": []}}'
    if document.endswith("(ref 2)"):
        return f'{{"n": 1, "maybe": 1, "many": [1, {huge}]}}'
    return f'{{"n": {INT64_MAX}, "maybe": -{INT64_MAX + 1}, "many": [{INT64_MAX}]}}'


@pytest.mark.parametrize("reasks", ["0", "1"])
def test_an_integer_beyond_int64_is_never_an_ok_row_holding_null(tmp_path: Path, reasks: str) -> None:
    schemas = tmp_path / "schemas"
    write_task(schemas, "big", INTEGERS)
    with glm_answering(_integer_answer) as (base_url, received):
        done = run(tmp_path, schemas, "big", "o.parquet", base_url, "--max-reasks", reasks)
    assert done.returncode == 0, done.stderr
    frame = pl.read_parquet(tmp_path / "o.parquet").sort("ticket_id")
    head, tail = frame.head(3), frame.tail(ROWS - 3)
    if reasks == "0":
        assert head["_status"].to_list() == ["invalid"] * 3, head.select("_status", "_error_message")
        assert all("9223372036854775807" in m for m in head["_error_message"].to_list()), head["_error_message"]
    else:  # re-asked with the validator's error, and the second answer fits
        assert head["_status"].to_list() == ["ok"] * 3 and head["_reasks"].to_list() == [1] * 3
        assert any("greater than the maximum of 9223372036854775807" in m["content"]
                   for body in received for m in body["messages"] if m["role"] == "user")
    assert tail["_status"].to_list() == ["ok"] * (ROWS - 3)
    assert tail["n"].to_list() == [INT64_MAX] * (ROWS - 3)
    assert tail["maybe"].to_list() == [-INT64_MAX - 1] * (ROWS - 3)
    assert tail["many"].to_list() == [[INT64_MAX]] * (ROWS - 3)
    assert summary_of(tmp_path / "o.parquet")["status_counts"]["ok"] == frame.filter(pl.col("_status") == "ok").height


def test_a_huge_integer_in_a_number_field_after_prose_is_kept_not_a_traceback(tmp_path: Path) -> None:
    """An answer with prose around its JSON is read by the fallback parser, which keeps big integers
    as Python ints: a ``number`` field then held one no JSON encoder of the journal could write."""
    schemas = tmp_path / "schemas"
    write_task(schemas, "amount", {"amount": described(type="number")})
    with glm_answering(lambda _: 'Here it is: {"amount": 100000000000000000000000000000} done') as (base_url, _):
        done = run(tmp_path, schemas, "amount", "o.parquet", base_url)
    assert done.returncode == 0, done.stderr
    frame = pl.read_parquet(tmp_path / "o.parquet")
    assert frame["_status"].to_list() == ["ok"] * ROWS
    assert frame["amount"].to_list() == [1e29] * ROWS


def test_an_ok_verdict_an_older_validator_gave_a_huge_integer_is_refused_then_rejudged(tmp_path: Path) -> None:
    """A journal written before integers were bounded holds ``ok`` answers whose integer the column
    cannot hold: a rerun says so in one line and names ``rejudge``, which judges them invalid."""
    schemas = tmp_path / "schemas"
    write_task(schemas, "big", INTEGERS)
    with glm_answering(lambda _: '{"n": 1, "maybe": null, "many": []}') as (base_url, received):
        assert run(tmp_path, schemas, "big", "o1.parquet", base_url).returncode == 0
        with Journal(tmp_path / "j.sqlite") as journal:  # what the older validator let through
            journal.replace_verdicts([replace(e, data_json='{"n": 1e20, "maybe": null, "many": []}', answer=None)
                                      for e in journal.entries("big")])
        sent = len(received)
        refused = run(tmp_path, schemas, "big", "o2.parquet", base_url)
        line = one_error_line(refused.stderr)
        assert refused.returncode == 2 and "'n' (1e+20) does not fit" in line and "rejudge --task big" in line, line
        rejudged = cli(tmp_path, "rejudge", "--task", "big", "--schemas-dir", str(schemas))
        assert f"ok→invalid: {ROWS}" in rejudged.stdout, rejudged.stdout + rejudged.stderr
        again = run(tmp_path, schemas, "big", "o3.parquet", base_url)
        assert again.returncode == 0, again.stderr
        assert len(received) == sent  # nothing asked again: the invalid verdicts are the journal's
    frame = pl.read_parquet(tmp_path / "o3.parquet")
    assert frame["_status"].to_list() == ["invalid"] * ROWS
    assert "greater than the maximum of 9223372036854775807" in frame["_error_message"][0]


def test_the_table_never_nulls_an_answer_value_it_cannot_type() -> None:
    """The last guard (a unit test: the validator keeps such answers out of every run): an answer
    value the column type cannot hold is an error naming the field, not a null on an ok row."""
    shard = pl.DataFrame({"id": ["a"]})
    meta = RowMeta(status="ok", error_code=None, error_message=None, attempts=1, reasks=0, prompt_tokens=1,
                   completion_tokens=1, cost_cny=0.0, latency_ms=None, finish_reason="stop", model="m",
                   request_id=None, key="k", from_journal=False, data_json=orjson.dumps({"n": 1e20}).decode())
    with pytest.raises(TaskError, match=r"'n' \(1e\+20\) does not fit"):
        assemble_shard(shard, "id", [meta], pl.Struct({"n": pl.Int64()}), RunColumns("t", "s", "v", "r"))


# ---- F14: unknown task.toml keys ----------------------------------------------------------------

def test_an_unknown_task_toml_key_is_refused_with_the_nearest_known_one(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    folder = write_task(schemas, "typo", {"intent": described(type="string")}, toml=TOML + "max_input_char = 10\n")
    listed = cli(tmp_path, "tasks", "--schemas-dir", str(schemas))
    assert listed.returncode == 2, listed.stdout
    assert f"{folder / 'task.toml'}: unknown key 'max_input_char' (did you mean 'max_input_chars'?)" in listed.stdout
    with glm_answering(lambda _: '{"intent": "x"}') as (base_url, received):
        done = run(tmp_path, schemas, "typo", "o.parquet", base_url)
    line = one_error_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert str(folder / "task.toml") in line and "'max_input_char'" in line and "'max_input_chars'" in line, line
    assert received == []
