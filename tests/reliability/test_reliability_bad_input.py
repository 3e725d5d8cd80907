"""Bad input: every way a run can be refused gives one clear line, a non-zero exit and no debris.

The CLI runs in-process (typer's CliRunner: the same command, exit codes and messages as the
console script, without paying a ~3 s interpreter start per case). Problems that concern one row
(an over-long or empty text) are not refusals: the row ends with its own status and the run goes on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorThread, serve_in_thread
from pipeline.cli import app
from tests.reliability.support import SCHEMAS, leftovers, one_error_line, ticket_frame

BAD_INPUT_EXIT = 2
UNUSED_URL = "http://127.0.0.1:9/api/paas/v4"  # never contacted: every case is refused before a request


@dataclass
class Case:
    """What to run (relative to the case's tmp dir) and the words the one error line must hold."""

    expect: str
    input: str = "in.parquet"
    output: str = "out/out.parquet"
    task: str = "ticket_qa"
    schemas: bool = False  # run against a private copy of schemas/ (made by the builder)
    extra: list[str] = field(default_factory=list)


def good(tmp: Path, n: int = 5) -> None:
    ticket_frame(n).write_parquet(tmp / "in.parquet")


def own_task(tmp: Path) -> Path:
    """A private copy of ticket_qa under tmp/schemas, for cases that break the task."""
    folder = tmp / "schemas" / "ticket_qa"
    shutil.copytree(SCHEMAS / "ticket_qa", folder)
    return folder


def missing_file(tmp: Path) -> Case:
    return Case("input not found", input="nope.parquet")


def folder_of_mixed_files(tmp: Path) -> Case:
    (tmp / "mixed").mkdir()
    ticket_frame(3).write_parquet(tmp / "mixed" / "a.parquet")
    (tmp / "mixed" / "notes.csv").write_text("ticket_id,text\n1,hello\n")
    return Case("not .parquet", input="mixed")


def empty_folder(tmp: Path) -> Case:
    (tmp / "nothing").mkdir()
    return Case("holds no .parquet file", input="nothing")


def glob_matching_nothing(tmp: Path) -> Case:
    return Case("matches no file", input="nowhere/*.parquet")


def not_parquet(tmp: Path) -> Case:
    (tmp / "in.parquet").write_text("ticket_id,channel,text\nt-1,chat,hello\n")
    return Case("not a readable Parquet file")


def truncated_parquet(tmp: Path) -> Case:
    good(tmp, 50)
    data = (tmp / "in.parquet").read_bytes()
    (tmp / "in.parquet").write_bytes(data[: len(data) // 2])
    return Case("not a readable Parquet file")


def files_whose_column_types_conflict(tmp: Path) -> Case:
    (tmp / "parts").mkdir()
    ticket_frame(3).write_parquet(tmp / "parts" / "a.parquet")
    ticket_frame(3, start=3).with_columns(pl.Series("channel", [1, 2, 3])).write_parquet(tmp / "parts" / "b.parquet")
    return Case(f"b.parquet: column 'channel' has type int64, but {tmp}/parts/a.parquet has", input="parts")


def list_typed_id_column(tmp: Path) -> Case:
    ticket_frame(3).with_columns(pl.Series("ticket_id", [["a"], ["b"], ["c"]])).write_parquet(tmp / "in.parquet")
    return Case("in.parquet: id column 'ticket_id' has type large_list<element: large_string>; "
                "ids must be strings or integers")


def missing_id_column(tmp: Path) -> Case:
    ticket_frame(3).drop("ticket_id").write_parquet(tmp / "in.parquet")
    return Case("missing column 'ticket_id'")


def missing_text_column(tmp: Path) -> Case:
    ticket_frame(3).drop("text").write_parquet(tmp / "in.parquet")
    return Case("missing column 'text'")


def non_string_text_column(tmp: Path) -> Case:
    ticket_frame(3).with_columns(pl.Series("text", [1, 2, 3], dtype=pl.Int64)).write_parquet(tmp / "in.parquet")
    return Case("text column 'text' has type int64, expected string")


def duplicate_ids(tmp: Path) -> Case:
    frame = ticket_frame(4)
    frame.with_columns(pl.Series("ticket_id", ["a", "b", "b", "c"])).write_parquet(tmp / "in.parquet")
    return Case("duplicate value 'b'")


def null_ids(tmp: Path) -> Case:
    frame = ticket_frame(4)
    frame.with_columns(pl.Series("ticket_id", ["a", None, "c", "d"], dtype=pl.String)).write_parquet(tmp / "in.parquet")
    return Case(f"id column 'ticket_id' is null at row 1 of {tmp}/in.parquet")


def duplicate_id_in_the_second_file(tmp: Path) -> Case:
    (tmp / "parts").mkdir()
    ticket_frame(3).write_parquet(tmp / "parts" / "a.parquet")
    ticket_frame(3, start=1).write_parquet(tmp / "parts" / "b.parquet")
    return Case(f"id column 'ticket_id' has duplicate value 't-000001' at row 1 of {tmp}/parts/a.parquet and "
                f"row 0 of {tmp}/parts/b.parquet", input="parts")


def input_column_clashes_with_output_field(tmp: Path) -> Case:
    ticket_frame(3).with_columns(pl.lit("x").alias("summary")).write_parquet(tmp / "in.parquet")
    return Case("output field 'summary' collides with input column 'summary'; pass --output-prefix x_")


def unknown_task(tmp: Path) -> Case:
    good(tmp)
    return Case("unknown task 'resumes'", task="resumes")


def schema_not_json(tmp: Path) -> Case:
    good(tmp)
    (own_task(tmp) / "schema.json").write_text('{"type": "object", "properties": {')
    return Case("schema.json: not valid JSON", schemas=True)


def schema_not_json_schema(tmp: Path) -> Case:
    good(tmp)
    (own_task(tmp) / "schema.json").write_text('{"type": "objekt", "properties": {"a": {"type": "string"}}}')
    return Case("schema.json: not a valid JSON Schema", schemas=True)


def task_toml_not_toml(tmp: Path) -> Case:
    good(tmp)
    (own_task(tmp) / "task.toml").write_text('id_column = "ticket_id\n')
    return Case("task.toml: not valid TOML", schemas=True)


def column_mapped_to_a_missing_column(tmp: Path) -> Case:
    good(tmp)
    return Case("missing column 'customer_name'", extra=["--column", "channel=customer_name"])


def column_mapping_without_equals(tmp: Path) -> Case:
    good(tmp)
    return Case("--column expects NAME=INPUT_COLUMN, got 'content'", extra=["--column", "content"])


def column_mapping_of_an_unknown_name(tmp: Path) -> Case:
    good(tmp)
    return Case("task 'ticket_qa' has no column 'body'", extra=["--column", "body=text"])


def output_prefix_starting_with_underscore(tmp: Path) -> Case:
    good(tmp)
    return Case("names starting with '_' are the meta columns", extra=["--output-prefix", "_x"])


def template_without_document_frame(tmp: Path) -> Case:
    good(tmp)
    (own_task(tmp) / "prompt.txt").write_text("Inspect this conversation: ${text}\n")
    return Case("prompt.txt: the template must put ${text} inside a <document>", schemas=True)


def output_folder_missing(tmp: Path) -> Case:
    good(tmp)
    return Case("does not exist", output="no/such/dir/out.parquet")


def output_not_parquet(tmp: Path) -> Case:
    good(tmp)
    return Case("must end in .parquet", output="out/out.csv")


def output_is_a_directory(tmp: Path) -> Case:
    good(tmp)
    (tmp / "out" / "dir.parquet").mkdir()
    return Case("is a directory", output="out/dir.parquet")


def output_folder_not_writable(tmp: Path) -> Case:
    good(tmp)
    if os.geteuid() != 0:
        (tmp / "out").chmod(0o500)
        return Case("is not writable")
    # root writes through permission bits; a read-only mount still refuses it
    for candidate in ("/proc/sys", "/sys/kernel"):
        if Path(candidate).is_dir() and not os.access(candidate, os.W_OK):
            return Case("is not writable", output=f"{candidate}/out.parquet")
    pytest.skip("running as root with no read-only folder to write into")


CASES: list[Callable[[Path], Case]] = [
    missing_file, folder_of_mixed_files, empty_folder, glob_matching_nothing, not_parquet, truncated_parquet,
    files_whose_column_types_conflict, list_typed_id_column, duplicate_id_in_the_second_file, missing_id_column,
    missing_text_column, non_string_text_column, duplicate_ids, null_ids, input_column_clashes_with_output_field,
    unknown_task, schema_not_json, schema_not_json_schema, task_toml_not_toml, column_mapped_to_a_missing_column,
    column_mapping_without_equals, column_mapping_of_an_unknown_name, output_prefix_starting_with_underscore,
    template_without_document_frame, output_folder_missing, output_not_parquet, output_is_a_directory,
    output_folder_not_writable,
]  # fmt: skip


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("build", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_gives_one_clear_line_nonzero_exit_and_no_debris(
    tmp_path: Path, runner: CliRunner, build: Callable[[Path], Case]
) -> None:
    (tmp_path / "out").mkdir()
    case = build(tmp_path)
    output = tmp_path / case.output if not case.output.startswith("/") else Path(case.output)
    args = ["run", "--task", case.task, "--input", str(tmp_path / case.input), "--output", str(output), "-q",
            "--base-url", UNUSED_URL, *case.extra]
    if case.schemas:
        args += ["--schemas-dir", str(tmp_path / "schemas")]
    try:
        result = runner.invoke(app, args)
    finally:
        (tmp_path / "out").chmod(0o700)
    assert result.exit_code == BAD_INPUT_EXIT, (result.exception, result.stderr, result.stdout)
    line = one_error_line(result.stderr)
    assert line.startswith("error: ") and case.expect in line, line
    assert "Traceback" not in result.stderr + result.stdout
    assert not output.is_file() and not output.with_name(output.name + ".summary.json").exists()
    if output.parent.is_dir() and os.access(output.parent, os.W_OK):
        assert leftovers(output.parent, output) == []
    assert not Path(os.environ["GLM_EXTRACT_JOURNAL_PATH"]).exists()  # refused before opening the journal


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with serve_in_thread(EmulatorConfig(concurrency=4, latency=LatencySpec.parse("fixed:0.001"), seed=2)) as emu:
        yield emu


def test_row_level_problems_end_as_row_statuses_without_a_request(
    tmp_path: Path, runner: CliRunner, emulator: EmulatorThread
) -> None:
    too_long = "Customer: " + "我的订单还没到。" * 15_000  # 120k characters > max_input_chars = 100,000
    texts: list[str | None] = ["Customer: where is order ORD-1?", too_long, None, "   ", "Customer: refund ORD-2",
                               "\u200b\u200d\ufeff \u2060"]  # zero-width characters only: nothing to read
    ticket_frame(len(texts), texts=texts).write_parquet(tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"
    result = runner.invoke(app, ["run", "--task", "ticket_qa", "--input", str(tmp_path / "in.parquet"),
                                 "--output", str(output), "-q", "--base-url", emulator.base_url])
    assert result.exit_code == 0, (result.exception, result.stderr)
    table = pl.read_parquet(output)
    assert table["_status"].to_list() == ["ok", "failed", "skipped", "skipped", "ok", "skipped"]
    assert table["_error_code"].to_list() == [None, "input_too_long", "empty_text", "empty_text", None, "empty_text"]
    message = table["_error_message"][1]
    assert f"{len(too_long)} characters" in message and "max_input_chars=100000" in message
    assert table["_attempts"].to_list() == [1, 0, 0, 0, 1, 0]
    assert emulator.stats()["requests_received"] == 2  # nothing is paid for the refused rows


def test_empty_input_is_refused_clearly_or_gives_an_empty_table(tmp_path: Path, runner: CliRunner) -> None:
    ticket_frame(0).write_parquet(tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"
    result = runner.invoke(app, ["run", "--task", "ticket_qa", "--input", str(tmp_path / "in.parquet"),
                                 "--output", str(output), "-q", "--base-url", UNUSED_URL])
    if result.exit_code == 0:  # one row out per row in: zero rows, typed columns
        assert pl.read_parquet(output).height == 0
    else:
        assert result.exit_code == BAD_INPUT_EXIT, result.exception
        assert "no rows" in one_error_line(result.stderr)
        assert not output.exists()
    assert leftovers(tmp_path, output) == []


def test_a_rerun_cleans_the_temp_file_of_a_write_killed_earlier(
    tmp_path: Path, runner: CliRunner, emulator: EmulatorThread
) -> None:
    ticket_frame(3).write_parquet(tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"
    (tmp_path / ".out.parquet.k1ll3d_8.tmp").write_bytes(b"PAR1 half a file")  # what kill -9 mid-write leaves
    result = runner.invoke(app, ["run", "--task", "ticket_qa", "--input", str(tmp_path / "in.parquet"),
                                 "--output", str(output), "-q", "--base-url", emulator.base_url])
    assert result.exit_code == 0, result.stderr
    assert leftovers(tmp_path, output) == []
