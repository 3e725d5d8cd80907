"""Real data as users have it, run from outside the repository: other column names, missing
template columns, input columns named like output fields, folders written by different tools.

Every test works in its own tmp dir (the current directory during the run) with no
``GLM_EXTRACT_SCHEMAS_DIR``, so the bundled tasks must be found from where the package lives.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorThread, serve_in_thread
from pipeline.cli import app
from tests.reliability.support import leftovers, one_error_line, ticket_frame

BAD_INPUT_EXIT = 2


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no schemas/ folder and no task setting."""
    monkeypatch.delenv("GLM_EXTRACT_SCHEMAS_DIR", raising=False)
    monkeypatch.delenv("GLM_EXTRACT_SCHEMAS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    config = EmulatorConfig(concurrency=8, latency=LatencySpec.parse("fixed:0.001"), seed=5, profile="clean")
    with serve_in_thread(config) as emu:
        yield emu


def run(*args: str, base_url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["run", *args, "-q", "--base-url", base_url])
    if result.exit_code == 1:  # not one of ours: show the exception
        raise AssertionError(result.stderr) from result.exception
    return result.exit_code, result.stdout, result.stderr


def reports(n: int) -> pl.DataFrame:
    """Financial report excerpts as a user's export has them: company and period columns, no doc_type."""
    return pl.DataFrame({
        "report_id": [f"r-{i}" for i in range(n)],
        "company": [f"Company {i}" for i in range(n)],
        "period": ["FY2023"] * n,
        "text": [f"Company {i} reported revenue of {100 + i}.5 million USD for FY2023, up {i}.2%." for i in range(n)],
    })


def test_a_file_with_company_and_period_columns_runs_through_financial_report_with_an_option(
    outside: Path, emulator: EmulatorThread
) -> None:
    reports(4).write_parquet("reports.parquet")
    code, _, stderr = run("--task", "financial_report", "-i", "reports.parquet", "-o", "out.parquet",
                          base_url=emulator.base_url)
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    assert "output field 'company' collides with input column 'company'" in line
    assert "--output-prefix x_" in line  # the message names the option that resolves it
    assert not Path("out.parquet").exists()

    code, _, stderr = run("--task", "financial_report", "-i", "reports.parquet", "-o", "out.parquet",
                          "--output-prefix", "x_", base_url=emulator.base_url)
    assert code == 0, stderr
    table = pl.read_parquet("out.parquet")
    assert table["company"].to_list() == [f"Company {i}" for i in range(4)]  # the input column, unchanged
    assert table["_status"].to_list() == ["ok"] * 4
    extracted = [c for c in table.columns if c.startswith("x_")]
    assert extracted[:2] == ["x_company", "x_report_period"] and table["x_language"].null_count() == 0
    assert table.columns.index("x_company") > table.columns.index("text")  # input, extraction, meta


def test_a_text_column_named_content_is_mapped_and_a_missing_channel_gets_its_default(
    outside: Path, emulator: EmulatorThread
) -> None:
    tickets = ticket_frame(3).drop("channel").rename({"text": "content"})
    tickets.write_parquet("tickets.parquet")
    code, _, stderr = run("--task", "ticket_qa", "-i", "tickets.parquet", "-o", "out.parquet",
                          "--column", "text=content", base_url=emulator.base_url)
    assert code == 0, stderr
    table = pl.read_parquet("out.parquet")
    assert table.columns[:2] == ["ticket_id", "content"]
    assert table["_status"].to_list() == ["ok"] * 3
    assert table["_record_id"].to_list() == tickets["ticket_id"].to_list()


def test_the_id_column_can_be_mapped_too(outside: Path, emulator: EmulatorThread) -> None:
    ticket_frame(2).rename({"ticket_id": "case_no"}).write_parquet("tickets.parquet")
    code, _, stderr = run("--task", "ticket_qa", "-i", "tickets.parquet", "-o", "out.parquet",
                          "--column", "ticket_id=case_no", base_url=emulator.base_url)
    assert code == 0, stderr
    assert pl.read_parquet("out.parquet")["_record_id"].to_list() == ["t-000000", "t-000001"]


def test_a_folder_written_by_polars_and_pyarrow_runs_as_one_input(outside: Path, emulator: EmulatorThread) -> None:
    Path("mixed").mkdir()
    ticket_frame(3).write_parquet("mixed/a_polars.parquet")  # large_string, ticket_id/channel/text
    later = ticket_frame(2, start=3)
    arrow = pa.table({  # pyarrow's string, another column order, one extra column, int32 and non-null fields
        "text": pa.array(later["text"].to_list(), pa.string()),
        "priority": pa.array([1, 2], pa.int32()),
        "ticket_id": pa.array(later["ticket_id"].to_list(), pa.string()),
        "channel": pa.array(later["channel"].to_list(), pa.string()),
    }, schema=pa.schema([pa.field("text", pa.string(), nullable=False), pa.field("priority", pa.int32()),
                         pa.field("ticket_id", pa.string(), nullable=False), pa.field("channel", pa.string())]))
    pq.write_table(arrow, "mixed/b_pyarrow.parquet")
    code, _, stderr = run("--task", "ticket_qa", "-i", "mixed", "-o", "out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    table = pl.read_parquet("out.parquet")
    assert table.columns[:4] == ["ticket_id", "channel", "text", "priority"]
    assert table["ticket_id"].to_list() == [f"t-{i:06d}" for i in range(5)]
    assert table["priority"].to_list() == [None, None, None, 1, 2]
    assert table.schema["priority"] == pl.Int32
    assert table["_status"].to_list() == ["ok"] * 5


def test_integer_widths_are_unified_and_a_real_conflict_names_both_files(outside: Path) -> None:
    Path("ints").mkdir()
    pq.write_table(pa.table({"ticket_id": pa.array([1, 2], pa.int32()), "text": ["a", "b"]}), "ints/a.parquet")
    pq.write_table(pa.table({"ticket_id": pa.array([3], pa.int64()), "text": pa.array(["c"], pa.large_string())}),
                   "ints/b.parquet")
    pq.write_table(pa.table({"ticket_id": pa.array([4], pa.int64()), "text": pa.array([5], pa.int64())}),
                   "ints/c.parquet")
    result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", "ints", "-o", "out.parquet", "-q",
                                      "--base-url", "http://127.0.0.1:9/api/paas/v4"])
    assert result.exit_code == BAD_INPUT_EXIT
    line = one_error_line(result.stderr)
    assert "ints/c.parquet: column 'text' has type int64, but ints/a.parquet has" in line, line


def test_input_and_output_the_same_file_is_refused_under_any_path(outside: Path) -> None:
    ticket_frame(3).write_parquet("in.parquet")
    before = Path("in.parquet").read_bytes()
    Path("sub").mkdir()
    Path("link.parquet").symlink_to(outside / "in.parquet")
    for output in ("in.parquet", "sub/../in.parquet", str(outside / "in.parquet"), "link.parquet"):
        result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", "in.parquet", "-o", output, "-q",
                                          "--base-url", "http://127.0.0.1:9/api/paas/v4"])
        assert result.exit_code == BAD_INPUT_EXIT, (output, result.stderr)
        assert "is the input file" in one_error_line(result.stderr)
    assert Path("in.parquet").read_bytes() == before
    assert leftovers(outside, Path("in.parquet")) == []


def test_an_unsupported_output_extension_is_refused_before_the_emulator_starts(outside: Path) -> None:
    ticket_frame(2).write_parquet("in.parquet")
    result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", "in.parquet", "-o", "out.csv", "-q"])
    assert result.exit_code == BAD_INPUT_EXIT
    assert "must end in .parquet" in one_error_line(result.stderr)
    assert "OFFLINE" not in result.stdout  # no key, but nothing was started


def test_a_run_with_nothing_sent_prints_no_none_latency_and_counts_one_row(outside: Path) -> None:
    ticket_frame(1, texts=["\u200b\u200b"]).write_parquet("in.parquet")  # zero-width only: skipped, not sent
    result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", "in.parquet", "-o", "out.parquet", "-q",
                                      "--base-url", "http://127.0.0.1:9/api/paas/v4"])
    assert result.exit_code == 0, result.stderr
    assert "None" not in result.stdout and not re.search(r"(?<![\d.])1 rows\b", result.stdout)
    assert "1 row," in result.stdout  # "error empty_text │ 1 row, e.g. t-000000"
    assert pl.read_parquet("out.parquet")["_error_code"].to_list() == ["empty_text"]


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command as a user runs it: its own process, another working directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GLM_EXTRACT_", "ZHIPUAI"))}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_tasks_outside_the_repository_lists_the_bundled_tasks_and_their_columns(tmp_path: Path) -> None:
    result = cli("tasks", cwd=tmp_path, COLUMNS="250")
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "ticket_id (id), text (text)" in lines["ticket_qa"] and "channel ('unknown')" in lines["ticket_qa"]
    assert "report_id (id), text (text)" in lines["financial_report"]
    assert "doc_type ('unknown')" in lines["financial_report"]


def test_an_unknown_task_says_where_it_looked(tmp_path: Path) -> None:
    result = cli("run", "--task", "resumes", "-i", "x.parquet", "-o", "y.parquet", cwd=tmp_path, COLUMNS="400")
    assert result.returncode == BAD_INPUT_EXIT
    line = one_error_line(result.stderr)
    assert f"unknown task 'resumes': looked in {tmp_path}/schemas (no such folder), " in line
    assert "known tasks: financial_report, ticket_qa" in line
    assert "GLM_EXTRACT_SCHEMAS" in line


def test_a_folder_named_by_GLM_EXTRACT_SCHEMAS_is_searched_and_a_broken_task_is_listed_beside_the_good_ones(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "my_tasks"
    for name, prompt in (("notes", "Summarise.\n<document>\n${body}\n</document>\n"), ("broken", "${body}\n")):
        (mine / name).mkdir(parents=True)
        (mine / name / "task.toml").write_text(
            'description = "d"\nid_column = "id"\ntext_column = "body"\nprompt_version = "2026-11-29.1"\n')
        (mine / name / "schema.json").write_text(
            '{"type": "object", "properties": {"gist": {"type": "string", "description": "one line"}},'
            ' "required": ["gist"], "additionalProperties": false}')
        (mine / name / "prompt.txt").write_text(prompt)
    result = cli("tasks", cwd=tmp_path, COLUMNS="400", GLM_EXTRACT_SCHEMAS=str(mine))
    assert result.returncode == BAD_INPUT_EXIT  # one task does not load: said, and the exit code tells a script
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert set(rows) == {"broken", "notes", "financial_report", "ticket_qa"}
    assert "does not load" in rows["broken"] and "inside a <document>" in rows["broken"]
    assert "id (id), body (text)" in rows["notes"]
    assert "1 task do not load: broken" in result.stderr


def test_a_missing_template_column_renders_its_default_and_the_mapped_text_sits_in_the_frame() -> None:
    from pipeline.prompts import RenderOptions, render_request
    from pipeline.tables import prompt_rows
    from pipeline.tasks import bind_columns, load_task, parse_column_mapping

    task = bind_columns(load_task("ticket_qa", Path("schemas")), parse_column_mapping(["text=content"]))
    (row,) = prompt_rows(pl.DataFrame({"ticket_id": ["t1"], "content": ["Customer: where is ORD-9?"]}), task)
    user = render_request(task, row, RenderOptions(model="m"))["messages"][1]["content"]
    assert "unknown" in user.split("<document>")[0]  # the channel's default, where the template puts ${channel}
    assert "<document>\nCustomer: where is ORD-9?\n</document>" in user


def test_the_flow_form_carries_the_column_mapping_and_prefix_into_the_run() -> None:
    from datetime import date

    from flows.extract import build_request
    from flows.params import ExtractParams

    params = ExtractParams.model_validate({"task": "financial_report", "input": "in.parquet", "output": "o.parquet",
                                           "columns": {"text": "body"}, "output_prefix": "x_"})
    request = build_request(params, date(2026, 11, 28))
    assert request.columns == {"text": "body"} and request.output_prefix == "x_"
    assert ExtractParams.model_json_schema()["properties"]["columns"]["title"] == "Column mapping"


def test_shards_cut_for_separate_tasks_share_the_unified_schema(outside: Path) -> None:
    from pipeline.io import check_input, plan_shards, read_shard

    Path("mixed").mkdir()
    ticket_frame(2).write_parquet("mixed/a.parquet")
    pq.write_table(pa.table({"text": pa.array(["x"], pa.string()), "ticket_id": ["t-9"], "extra": [1.5]}),
                   "mixed/b.parquet")
    files = (Path("mixed/a.parquet"), Path("mixed/b.parquet"))
    info = check_input(files, id_column="ticket_id", text_column="text", needed=[])
    frames = [read_shard(spec) for spec in plan_shards(info, 1)]
    assert {tuple(f.schema.items()) for f in frames} == {tuple(frames[0].schema.items())}
    assert frames[0].columns == ["ticket_id", "channel", "text", "extra"]
    assert frames[2].row(0) == ("t-9", None, "x", 1.5)


def test_model_and_max_reasks_explain_themselves_in_help() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"\s+", " ", result.stdout)
    assert "GLM model id" in text and "re-asks (each paid)" in text
    assert "--column" in text and "NAME=INPUT_COLUMN" in text and "--output-prefix" in text


def test_exit_code_4_starts_at_the_threshold_the_readme_states(outside: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "only checked from\n  10 attempted rows on" in readme
    codes = []
    for rows in (9, 10):  # every row over max_input_chars: failed locally (input_too_long), nothing sent
        ticket_frame(rows, texts=["Customer: " + "x" * 100_000] * rows).write_parquet("in.parquet")
        result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", "in.parquet", "-o", f"o{rows}.parquet",
                                          "-q", "--base-url", "http://127.0.0.1:9/api/paas/v4"])
        assert result.exit_code != 1, (result.exception, result.stderr)
        assert pl.read_parquet(f"o{rows}.parquet")["_status"].to_list() == ["failed"] * rows
        codes.append(result.exit_code)
    assert codes == [0, 4]


def test_one_row_is_one_row_in_the_export_line(outside: Path, emulator: EmulatorThread) -> None:
    ticket_frame(1).write_parquet("in.parquet")
    code, stdout, stderr = run("--task", "ticket_qa", "-i", "in.parquet", "-o", "out.parquet",
                               base_url=emulator.base_url)
    assert code == 0, stderr
    assert re.search(r"\brows\s+│ 1 ", stdout)
    result = cli("export", "--output", "out.parquet", "--to", "w.duckdb", cwd=outside, COLUMNS="300")
    assert result.returncode == 0, result.stderr
    text = re.sub(r"\s+", " ", result.stdout + result.stderr)
    assert "exported 1 row to" in text and "table now 1 row" in text and "1 rows" not in text


def test_the_same_documents_under_another_column_name_reuse_their_answers(
    outside: Path, emulator: EmulatorThread
) -> None:
    ticket_frame(4).write_parquet("a.parquet")
    ticket_frame(4).rename({"text": "content", "channel": "source"}).write_parquet("b.parquet")
    code, _, stderr = run("--task", "ticket_qa", "-i", "a.parquet", "-o", "a_out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    code, _, stderr = run("--task", "ticket_qa", "-i", "b.parquet", "-o", "b_out.parquet", "--column", "text=content",
                          "--column", "channel=source", base_url=emulator.base_url)
    assert code == 0, stderr
    second = pl.read_parquet("b_out.parquet")
    assert second["_from_journal"].to_list() == [True] * 4  # nothing paid twice for a renamed column
    assert second["_key"].to_list() == pl.read_parquet("a_out.parquet")["_key"].to_list()


def test_files_differing_only_in_nullability_are_one_input(outside: Path, emulator: EmulatorThread) -> None:
    Path("parts").mkdir()
    for name, nullable, start in (("a", True, 0), ("b", False, 2)):
        frame = ticket_frame(2, start=start)
        schema = pa.schema([pa.field(c, pa.large_string(), nullable=nullable) for c in frame.columns])
        pq.write_table(frame.to_arrow().cast(schema), f"parts/{name}.parquet")
    assert not pq.read_schema("parts/a.parquet").equals(pq.read_schema("parts/b.parquet"))
    code, _, stderr = run("--task", "ticket_qa", "-i", "parts", "-o", "out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    assert pl.read_parquet("out.parquet")["_record_id"].to_list() == [f"t-{i:06d}" for i in range(4)]
