"""Input files as other tools write them (review r1, F3 F5 F6 F7 F14), driven through the CLI against the
emulator: one document gives one request key whatever shares its folder, columns polars cannot read and
ids that are neither strings nor integers are refused in one line before anything is paid, a folder
never drops a Parquet file without naming it, and dictionary-encoded strings are read as the strings.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from emulator.process import EmulatorThread
from pipeline.cli import app
from tests.reliability.support import one_error_line, ticket_frame
from tests.test_real_inputs import emulator, outside  # noqa: F401 - fixtures used by name

BAD_INPUT_EXIT = 2
NOWHERE = "http://127.0.0.1:9/api/paas/v4"  # a refused input never gets this far


def run(*args: str, base_url: str = NOWHERE) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", *args, "-q", "--base-url", base_url])
    if result.exit_code == 1:  # not one of ours: show it
        raise AssertionError(f"{result.stderr}\n{result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def estimate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``glm-extract estimate`` in its own process, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLM_EXTRACT_", "ZHIPUAI"))}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "estimate", "--task", "ticket_qa", *args],
                          cwd=cwd, env={**env, "GLM_EXTRACT_EMULATOR_PROFILE": "clean", "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=120, check=False)


def row_of(output: str, record_id: str) -> dict[str, object]:
    return pl.read_parquet(output).filter(pl.col("_record_id") == record_id).row(0, named=True)


# -- F3: an optional template column's null cell renders its default, as an absent column does ------------


def test_a_document_keeps_its_key_when_a_file_with_the_optional_column_joins_its_folder(
    outside: Path, emulator: EmulatorThread  # noqa: F811
) -> None:
    lone = pa.table({"ticket_id": ["4"], "text": ["I am angry about my refund"]})
    for folder in ("solo", "mix"):
        Path(folder).mkdir()
        pq.write_table(lone, f"{folder}/b.parquet")
    pq.write_table(pa.table({"ticket_id": ["1"], "text": ["hello"], "channel": ["chat"]}), "mix/a.parquet")

    code, _, stderr = run("-i", "solo", "-o", "solo.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    code, stdout, stderr = run("-i", "mix", "-o", "mix.parquet", base_url=emulator.base_url)
    assert code == 0, stderr

    alone, mixed = row_of("solo.parquet", "4"), row_of("mix.parquet", "4")
    assert mixed["channel"] is None  # the input column as it was read: null in that file's row
    assert mixed["_key"] == alone["_key"] and mixed["_from_journal"] is True  # not paid a second time
    assert "from_journal=1" in stdout


def test_a_null_channel_cell_is_asked_as_the_tasks_default(outside: Path, emulator: EmulatorThread) -> None:  # noqa: F811
    pq.write_table(pa.table({"ticket_id": ["n"], "channel": pa.array([None], pa.string()), "text": ["where is it"]}),
                   "null.parquet")
    pq.write_table(pa.table({"ticket_id": ["n"], "channel": ["unknown"], "text": ["where is it"]}), "said.parquet")
    for name in ("null", "said"):
        code, _, stderr = run("-i", f"{name}.parquet", "-o", f"{name}_out.parquet", base_url=emulator.base_url)
        assert code == 0, stderr
    assert row_of("null_out.parquet", "n")["_key"] == row_of("said_out.parquet", "n")["_key"]


# -- F5: a column type polars cannot read: one line, exit 2, before anything is paid ---------------------


@pytest.mark.parametrize(("kind", "values"), [
    (pa.decimal256(50, 2), [decimal.Decimal("1.25")]),
    (pa.decimal256(20, 2), [decimal.Decimal("1.25")]),
    (pa.list_(pa.decimal256(40, 0)), [[decimal.Decimal("7")]]),
    (pa.list_view(pa.int32()), [[1, 2]]),
])
def test_a_column_polars_cannot_read_is_refused_in_one_line_naming_file_column_and_type(
    outside: Path, kind: pa.DataType, values: list[object]  # noqa: F811
) -> None:
    Path("in").mkdir()
    pq.write_table(pa.table({"ticket_id": ["1"], "text": ["a b"], "amt": pa.array(values, kind)}), "in/a.parquet")
    code, _, stderr = run("-i", "in", "-o", "out.parquet", "--journal", "j.sqlite")
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    written = pq.read_schema("in/a.parquet").field("amt").type  # as the file says it (``element`` for ``item``)
    assert "in/a.parquet" in line and "'amt'" in line and f"type {written}" in line, line
    assert not Path("j.sqlite").exists() and not Path("out.parquet").exists()


def test_estimate_refuses_a_decimal256_column_in_one_line_too(outside: Path) -> None:  # noqa: F811
    pq.write_table(pa.table({"ticket_id": ["1"], "text": ["a b"],
                             "amt": pa.array([decimal.Decimal("1")], pa.decimal256(50, 2))}), "a.parquet")
    done = estimate(outside, "-i", "a.parquet", "--journal", "j.sqlite")
    assert done.returncode == BAD_INPUT_EXIT, done.stderr
    line = one_error_line(done.stderr)
    assert "a.parquet" in line and "'amt'" in line and "decimal256(50, 2)" in line, line


# -- F6: a folder names the .parquet files it skips ------------------------------------------------------


def test_a_folder_names_the_parquet_files_it_skips_in_run_and_estimate(outside: Path, emulator: EmulatorThread) -> None:  # noqa: F811
    Path("u/_temporary/0").mkdir(parents=True)
    pq.write_table(pa.table({"ticket_id": ["a1", "a2"], "text": ["x y", "z w"]}), "u/a.parquet")
    pq.write_table(pa.table({"ticket_id": ["b1", "b2", "b3"], "text": ["x y", "z w", "q"]}), "u/_b.parquet")
    pq.write_table(pa.table({"ticket_id": ["c1"], "text": ["half written"]}), "u/_temporary/0/part-0.parquet")
    Path("u/_SUCCESS").write_text("")  # Spark's marker: skipped, and not a Parquet file, so not named
    Path("u/.a.parquet.crc").write_text("")

    code, _, stderr = run("-i", "u", "-o", "out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    assert pl.read_parquet("out.parquet").height == 2  # the convention holds …
    assert "u/_b.parquet" in stderr and "u/_temporary/0/part-0.parquet" in stderr  # … and is said
    assert "2 .parquet files" in stderr and "u/_SUCCESS" not in stderr and ".crc" not in stderr

    done = estimate(outside, "-i", "u", "--journal", "out_j.sqlite", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 2  # stdout stays one JSON object
    assert "u/_b.parquet" in done.stderr


def test_a_folder_holding_only_skipped_parquet_files_is_refused_naming_them(outside: Path) -> None:  # noqa: F811
    Path("only").mkdir()
    pq.write_table(pa.table({"ticket_id": ["b1"], "text": ["x y"]}), "only/_b.parquet")
    code, _, stderr = run("-i", "only", "-o", "out.parquet")
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    assert "holds no .parquet file" in line and "only/_b.parquet" in line, line


def test_a_file_or_a_folder_skipping_nothing_says_nothing(outside: Path, emulator: EmulatorThread) -> None:  # noqa: F811
    Path("v").mkdir()
    pq.write_table(pa.table({"ticket_id": ["a1"], "text": ["x y"]}), "v/a.parquet")
    Path("v/_SUCCESS").write_text("")
    for source in ("v", "v/a.parquet"):
        code, _, stderr = run("-i", source, "-o", "out.parquet", base_url=emulator.base_url)
        assert code == 0 and stderr.strip() == "", stderr


# -- F7: ids are strings or integers ---------------------------------------------------------------------


@pytest.mark.parametrize("ids", [
    pa.array([datetime.datetime(2024, 1, 1)], pa.timestamp("ms")),
    pa.array([datetime.date(2024, 1, 1)], pa.date32()),
    pa.array([1.0], pa.float64()),
    pa.array([decimal.Decimal("1")], pa.decimal128(10, 0)),
    pa.array([True], pa.bool_()),
    pa.array([b"x"], pa.binary()),
])
def test_an_id_column_that_is_not_strings_or_integers_is_refused_naming_file_column_and_type(
    outside: Path, ids: pa.Array  # noqa: F811
) -> None:
    Path("in").mkdir()
    pq.write_table(pa.table({"ticket_id": ids, "text": ["same doc"]}), "in/a.parquet")
    code, _, stderr = run("-i", "in", "-o", "out.parquet", "--journal", "j.sqlite")
    assert code == BAD_INPUT_EXIT
    line = one_error_line(stderr)
    assert "in/a.parquet" in line and "id column 'ticket_id'" in line and str(ids.type) in line, line
    assert "strings or integers" in line
    assert not Path("j.sqlite").exists()


# -- F14: dictionary-encoded strings (pandas category, polars Categorical) read as the strings ---------


def categorical(frame: pl.DataFrame, *columns: str) -> pa.Table:
    """``frame`` with ``columns`` dictionary-encoded, as pandas writes a ``category`` column."""
    table = frame.to_arrow()
    for name in columns:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).dictionary_encode())
    return table


def test_dictionary_encoded_id_text_and_channel_give_the_keys_of_plain_strings(
    outside: Path, emulator: EmulatorThread  # noqa: F811
) -> None:
    frame = ticket_frame(4, texts=["refund please", "\u200b ", "card declined", None])
    frame.write_parquet("plain.parquet")
    pq.write_table(categorical(frame, "ticket_id", "channel", "text"), "cat.parquet")
    assert pa.types.is_dictionary(pq.read_schema("cat.parquet").field("text").type)

    code, _, stderr = run("-i", "plain.parquet", "-o", "plain_out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    code, stdout, stderr = run("-i", "cat.parquet", "-o", "cat_out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    plain, cat = pl.read_parquet("plain_out.parquet"), pl.read_parquet("cat_out.parquet")
    assert cat["_key"].to_list() == plain["_key"].to_list()
    assert cat["_status"].to_list() == plain["_status"].to_list() == ["ok", "skipped", "ok", "skipped"]
    assert cat["text"].to_list() == frame["text"].to_list() and cat["_from_journal"].to_list() == [True, False] * 2
    assert "sent=0" in stdout  # the blank one is not paid either

    done = estimate(outside, "-i", "cat.parquet", "--json", "--base-url", emulator.base_url,  # read its own way
                    "--journal", "journal.sqlite")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert (found["rows"], found["skipped"], found["requests"], found["from_journal"]) == (4, 2, 0, 2)


def test_a_folder_mixing_a_categorical_channel_with_plain_strings_runs_as_one_input(
    outside: Path, emulator: EmulatorThread  # noqa: F811
) -> None:
    Path("m").mkdir()
    ticket_frame(2).write_parquet("m/a.parquet")
    pq.write_table(categorical(ticket_frame(2, start=2), "channel"), "m/b.parquet")
    pl.DataFrame({"ticket_id": ["t-000004"], "channel": ["chat"], "text": ["polars categorical"]},
                 schema={"ticket_id": pl.String, "channel": pl.Categorical, "text": pl.Categorical},
                 ).write_parquet("m/c.parquet")
    code, _, stderr = run("-i", "m", "-o", "out.parquet", base_url=emulator.base_url)
    assert code == 0, stderr
    table = pl.read_parquet("out.parquet")
    assert table["channel"].to_list() == ["chat", "email", "phone", "chat", "chat"]
    assert table.schema["channel"] == pl.String and table["_status"].to_list() == ["ok"] * 5
