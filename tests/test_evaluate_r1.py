"""`glm-extract evaluate` on outputs of real runs (the CLI in a subprocess, the bundled emulator):
data with only some gold columns, a gold file for other ids, an output written with
`--output-prefix`, and `--compare` of two runs with another model or prompt version (review r1:
F9, F10, F14)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO, SAMPLE, SCHEMAS
from tests.reliability.support import one_error_line

BAD_INPUT_EXIT = 2
ROWS = 12
SECRETS = ("ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY", "GLM_EXTRACT_BASE_URL", "PREFECT_API_URL")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env |= {"GLM_EXTRACT_EMULATOR_PROFILE": "clean", "GLM_EXTRACT_SCHEMAS_DIR": str(SCHEMAS),
            "GLM_EXTRACT_JOURNAL_PATH": str(cwd / "journal.sqlite"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def run(work: Path, output: str, *extra: str, source: str = "tickets.parquet") -> Path:
    done = cli("run", "--task", "ticket_qa", "--input", str(work / source), "--output", output, "-q",
               "--emulator-latency", "fixed:0.001", *extra, cwd=work)
    assert done.returncode == 0, done.stderr
    return work / output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Path]:
    """Outputs of ticket_qa over tickets shaped as the real data is (one gold column,
    `gold_primary_intent`): plain, with `--output-prefix x_` (answers from the journal), with
    another model, and with the task's prompt version bumped; and over tickets with an input column
    `summary` (a field's name), so run with `--output-prefix x_`."""
    work = tmp_path_factory.mktemp("r1")
    sample = pl.read_parquet(SAMPLE / "tickets.parquet").head(ROWS)
    sample.select("ticket_id", "channel", "lang", "text",
                  pl.col("gold_issue_category").alias("gold_primary_intent")).write_parquet(work / "tickets.parquet")
    bumped = work / "schemas" / "ticket_qa"
    shutil.copytree(SCHEMAS / "ticket_qa", bumped)
    toml = (bumped / "task.toml").read_text()
    (bumped / "task.toml").write_text(toml.replace('prompt_version = "', 'prompt_version = "9', 1))
    sample.select("ticket_id", "text", pl.lit("a note of the agent").alias("summary"),
                  pl.col("gold_issue_category").alias("gold_primary_intent")).write_parquet(work / "clash.parquet")
    return {
        "clash": run(work, "clash_out.parquet", "--output-prefix", "x_", source="clash.parquet"),
        "plain": run(work, "plain.parquet"),
        "prefixed": run(work, "prefixed.parquet", "--output-prefix", "x_"),
        "flash": run(work, "flash.parquet", "--model", "glm-4-flash"),
        "bumped": run(work, "bumped.parquet", "--schemas-dir", str(work / "schemas")),
    }


def evaluate(runs: Mapping[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    done = cli("evaluate", "--task", "ticket_qa", *args, cwd=runs["plain"].parent)
    assert done.returncode in (0, BAD_INPUT_EXIT), done.stderr
    return done


def field_lines(markdown: str) -> dict[str, list[str]]:
    """The score table's rows by field: gold column, metric, rows, score."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip().strip("`") for c in cells[1:]] for cells in rows}


def ok_rows(path: Path) -> int:
    return int((pl.read_parquet(path)["_status"] == "ok").sum())


# -- F9: --gold scores only the fields given ----------------------------------------------------------


def test_gold_on_the_command_line_scores_only_the_fields_given(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "-o", "plain.parquet", "--gold", "issue_category=gold_primary_intent")
    assert done.returncode == 0, done.stderr
    lines = field_lines(done.stdout)
    assert list(lines) == ["issue_category"], done.stdout
    assert lines["issue_category"][:3] == ["gold_primary_intent", "exact", str(ok_rows(runs["plain"]))]
    # the task's other [gold] fields are said to be left out, not silently dropped
    assert "not scored" in done.stdout and "`sentiment`" in done.stdout


def test_without_gold_the_missing_task_gold_columns_point_at_gold(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "-o", "plain.parquet")
    assert done.returncode == BAD_INPUT_EXIT
    line = one_error_line(done.stderr)
    assert "unknown gold column 'gold_issue_category'" in line
    assert "--gold FIELD=COLUMN" in line  # how to score just the fields the data has gold for


def test_a_gold_field_keeps_the_metric_of_the_tasks_gold(runs: Mapping[str, Path]) -> None:
    work = runs["plain"].parent
    ids = pl.read_parquet(runs["plain"])["ticket_id"].to_list()
    pl.DataFrame({"ticket_id": ids, "ents": [[] for _ in ids]}).write_parquet(work / "ents.parquet")
    done = evaluate(runs, "-o", "plain.parquet", "--gold-file", "ents.parquet", "--gold", "entities[].value=ents")
    assert done.returncode == 0, done.stderr
    assert field_lines(done.stdout)["entities[].value"][:2] == ["ents", "set_f1"]  # ticket_qa's metric, not exact


# -- F10: a gold file joined to no row -----------------------------------------------------------------


def test_a_gold_file_matching_no_id_is_refused_showing_both_sides(runs: Mapping[str, Path]) -> None:
    work = runs["plain"].parent
    pl.DataFrame({"ticket_id": ["zz1", "zz2"], "label": ["a", "b"]}).write_parquet(work / "nomatch.parquet")
    done = evaluate(runs, "-o", "plain.parquet", "--gold-file", "nomatch.parquet", "--gold", "issue_category=label")
    assert done.returncode == BAD_INPUT_EXIT, done.stdout
    line = one_error_line(done.stderr)
    assert "nomatch.parquet" in line and f"0 of {ROWS} rows" in line, line
    assert "'zz1'" in line and "'T-0001'" in line, line  # what the ids look like on both sides


def test_a_gold_file_matching_some_ids_says_how_many(runs: Mapping[str, Path]) -> None:
    work = runs["plain"].parent
    pl.DataFrame({"ticket_id": ["T-0001", "T-0002", "zz"], "label": ["billing", "refund", "x"]}).write_parquet(
        work / "some.parquet")
    done = evaluate(runs, "-o", "plain.parquet", "--gold-file", "some.parquet", "--gold", "issue_category=label")
    assert done.returncode == 0, done.stderr
    assert f"2 of {ROWS} rows have a gold id in some.parquet" in done.stdout


# -- F14: the output prefix is read from the table -------------------------------------------------------


def test_evaluate_reads_the_output_prefix_from_the_table(runs: Mapping[str, Path]) -> None:
    plain = evaluate(runs, "-o", "plain.parquet", "--gold", "issue_category=gold_primary_intent")
    prefixed = evaluate(runs, "-o", "prefixed.parquet", "--gold", "issue_category=gold_primary_intent")
    assert prefixed.returncode == 0, prefixed.stderr
    assert field_lines(prefixed.stdout) == {"x_issue_category": field_lines(plain.stdout)["issue_category"]}
    assert "output prefix `x_`" in prefixed.stdout


def test_evaluate_reads_the_prefix_of_an_output_beside_an_input_column_of_a_fields_name(
        runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "-o", "clash_out.parquet", "--gold", "issue_category=gold_primary_intent")
    assert done.returncode == 0, done.stderr
    assert list(field_lines(done.stdout)) == ["x_issue_category"]
    assert "output prefix `x_`" in done.stdout
    assert pl.read_parquet(runs["clash"])["summary"].unique().to_list() == ["a note of the agent"]  # the input's


def test_a_wrong_output_prefix_is_corrected_from_the_table(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "-o", "plain.parquet", "--output-prefix", "y_",
                    "--gold", "issue_category=gold_primary_intent")
    assert done.returncode == 0, done.stderr
    assert list(field_lines(done.stdout)) == ["issue_category"]
    assert "no output prefix (read from its columns; not --output-prefix y_)" in done.stdout


def test_compare_reads_each_tables_prefix(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "--compare", "plain.parquet", "prefixed.parquet")
    assert done.returncode == 0, done.stderr
    assert "B's fields carry the output prefix `x_`" in done.stdout
    lines = field_lines(done.stdout)
    ok = ok_rows(runs["plain"])
    assert lines["issue_category"][:2] == [str(ok), "0"]  # same answers (from the journal): nothing changed
    assert lines["summary"][:2] == [str(ok), "0"]


# -- F14: --compare says when the model or the prompt version differs -----------------------------------


def test_compare_names_a_model_change(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "--compare", "plain.parquet", "flash.parquet")
    assert done.returncode == 0, done.stderr
    assert "model `glm-4-air-250414`" in done.stdout and "`glm-4-flash`" in done.stdout


def test_compare_names_a_prompt_version_change(runs: Mapping[str, Path]) -> None:
    done = evaluate(runs, "--compare", "plain.parquet", "bumped.parquet")
    assert done.returncode == 0, done.stderr
    version = pl.read_parquet(runs["plain"])["_prompt_version"][0]
    assert f"prompt version `{version}`" in done.stdout and f"`9{version}`" in done.stdout


# -- the prefix rule itself (pure) ------------------------------------------------------------------------

FIELDS = ("issue_category", "sentiment", "summary", "language")


def test_output_prefixes_keeps_the_given_prefix_when_its_columns_are_there() -> None:
    from pipeline.evaluate import output_prefixes

    columns = ["ticket_id", *FIELDS, "gold_issue_category", "gold_sentiment", "gold_summary", "x_summary"]
    assert output_prefixes(columns, FIELDS) == ("",)  # gold_* covers every field too, but "" was given


def test_output_prefixes_is_ambiguous_or_empty_rather_than_a_guess() -> None:
    from pipeline.evaluate import output_prefixes

    both = ["ticket_id", *(f"a_{f}" for f in FIELDS), *(f"b_{f}" for f in FIELDS)]
    assert output_prefixes(both, FIELDS) == ("a_", "b_")
    assert output_prefixes(["ticket_id", "gold_sentiment", "gold_language"], FIELDS) == ()  # half is not enough
    assert output_prefixes([f"_x{f}" for f in FIELDS], FIELDS) == ()  # '_' starts the meta columns, not a prefix


def test_an_input_column_named_like_a_field_does_not_hide_the_prefixed_fields() -> None:
    """A table run with ``--output-prefix x_`` because its input has a ``summary`` column: without
    ``--output-prefix`` the prefix that covers every field is taken, not the input's one column."""
    from pipeline.evaluate import output_prefixes

    columns = ["ticket_id", "summary", "sentiment", *(f"x_{f}" for f in FIELDS)]
    assert output_prefixes(columns, FIELDS) == ("x_",)
    assert output_prefixes(columns, FIELDS, "x_") == ("x_",)

