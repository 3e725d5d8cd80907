"""The journal as a user meets it: the real CLI against the real emulator process.

Two runs sharing one journal pay once; an unusable journal is refused before the first request
(one line, exit 2); a journal that stops accepting commits stops the run at once; a rerun keeps
what its answers cost; ``journal stats|prune`` and ``rejudge`` work on the file.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import EmulatorProcess, start_emulator
from tests.reliability.support import (
    REPO,
    cli_env,
    comparable,
    journal_count,
    one_error_line,
    run_argv,
    run_cli,
    summary_of,
    ticket_frame,
)

CAP = 8


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    config = EmulatorConfig(concurrency=4 * CAP, latency=LatencySpec.parse("fixed:0.01"), seed=3)
    with start_emulator(config) as process:
        yield process


def write_input(folder: Path, rows: int) -> Path:
    path = folder / "in.parquet"
    ticket_frame(rows).write_parquet(path)
    return path


def cli(*args: str, journal: Path) -> subprocess.CompletedProcess[str]:
    return run_cli([sys.executable, "-m", "pipeline.cli", *args], cli_env(journal))


# ---- 1. two runs at once ------------------------------------------------------------------------

def test_two_runs_sharing_a_journal_at_once_pay_for_each_row_once(tmp_path: Path, emu: EmulatorProcess) -> None:
    rows = 600
    source, journal = write_input(tmp_path, rows), tmp_path / "shared.sqlite"
    env = cli_env(journal)
    emu.reset()
    runs = [subprocess.Popen(run_argv(source, tmp_path / f"out{i}.parquet", emu.base_url, CAP), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    sent = emu.stats()["requests_received"]
    assert rows <= sent <= rows + CAP, f"{sent} requests for {rows} rows"
    first, second = (pl.read_parquet(tmp_path / f"out{i}.parquet") for i in (1, 2))
    assert_frame_equal(comparable(first), comparable(second))
    assert first["_status"].to_list() == ["ok"] * rows
    both = pl.concat([first, second])
    assert both["_from_journal"].sum() >= rows - CAP  # one run waited for the other's answers
    assert abs(both["_cost_cny"].sum() - first["_paid_cost_cny"].sum()) < 0.05 * first["_paid_cost_cny"].sum()


# ---- 2. an unusable journal ---------------------------------------------------------------------

def assert_refused_before_paying(tmp_path: Path, emu: EmulatorProcess, journal: Path, expected: str) -> str:
    source, output = write_input(tmp_path, 30), tmp_path / "out.parquet"
    emu.reset()
    done = run_cli(run_argv(source, output, emu.base_url, CAP), cli_env(journal))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert expected in line and str(journal) in line, line
    assert emu.stats()["requests_received"] == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("out.parquet", ".out.parquet"))]
    return line


def test_an_immutable_journal_is_refused_before_the_first_request(tmp_path: Path, emu: EmulatorProcess,
                                                                   immutable) -> None:  # type: ignore[no-untyped-def]
    journal = tmp_path / "j.sqlite"
    done = run_cli(run_argv(write_input(tmp_path, 5), tmp_path / "first.parquet", emu.base_url, CAP), cli_env(journal))
    assert done.returncode == 0, done.stderr
    immutable(journal)
    assert_refused_before_paying(tmp_path, emu, journal, "is not writable")


def test_a_journal_folder_that_cannot_be_written_is_refused(tmp_path: Path, emu: EmulatorProcess,
                                                            immutable) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "state"
    folder.mkdir()
    immutable(folder)
    assert_refused_before_paying(tmp_path, emu, folder / "j.sqlite", "is not writable")


NOT_JOURNALS = [b"PK\x03\x04 a zip file, not a journal" * 20, b"SQLite format 3\x00" + b"\xff" * 300]


@pytest.mark.parametrize("content", NOT_JOURNALS)
def test_a_corrupt_journal_is_refused_naming_it_and_what_to_do(tmp_path: Path, emu: EmulatorProcess,
                                                               content: bytes) -> None:
    journal = tmp_path / "j.sqlite"
    journal.write_bytes(content)
    line = assert_refused_before_paying(tmp_path, emu, journal, "is corrupt or not a glm-extract journal")
    assert "move it aside" in line
    assert journal.read_bytes() == content  # left as it was, for the operator to look at


def test_a_journal_that_stops_accepting_commits_stops_the_run_at_once(tmp_path: Path, immutable) -> None:  # type: ignore[no-untyped-def]
    rows, journal, output = 400, tmp_path / "j.sqlite", tmp_path / "out.parquet"
    source = write_input(tmp_path, rows)
    config = EmulatorConfig(concurrency=4 * CAP, latency=LatencySpec.parse("fixed:0.05"), seed=4)
    with start_emulator(config) as slow:
        argv = run_argv(source, output, slow.base_url, CAP)
        with subprocess.Popen(argv, cwd=REPO, env=cli_env(journal), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as proc:
            while journal_count(journal) < 40:
                assert proc.poll() is None, "the run ended before the journal could be locked"
                time.sleep(0.005)  # poll interval
            immutable(journal.with_name("j.sqlite-wal"))
            at_lock = slow.stats()["requests_received"]
            _, stderr = proc.communicate(timeout=60)
        sent = slow.stats()["requests_received"]
    assert proc.returncode == 3, stderr
    line = one_error_line(stderr)
    assert f"journal {journal}" in line and "no further request was sent" in line, line
    assert sent - at_lock <= 2 * CAP, (at_lock, sent)  # what was on the wire, then nothing
    assert sent < rows
    assert not output.exists()


# ---- 4. the bill survives reruns ----------------------------------------------------------------

def test_a_rerun_keeps_what_its_answers_cost_when_they_were_paid(tmp_path: Path, emu: EmulatorProcess) -> None:
    source, journal = write_input(tmp_path, 40), tmp_path / "j.sqlite"
    first_out, rerun_out = tmp_path / "first.parquet", tmp_path / "rerun.parquet"
    assert run_cli(run_argv(source, first_out, emu.base_url, CAP), cli_env(journal)).returncode == 0
    emu.reset()
    rerun_done = run_cli(run_argv(source, rerun_out, emu.base_url, CAP), cli_env(journal))
    assert rerun_done.returncode == 0, rerun_done.stderr
    assert emu.stats()["requests_received"] == 0
    first, rerun = pl.read_parquet(first_out), pl.read_parquet(rerun_out)
    assert rerun["_cost_cny"].sum() == 0 and rerun["_from_journal"].all()
    assert first["_cost_cny"].sum() > 0
    assert rerun["_paid_cost_cny"].to_list() == first["_cost_cny"].to_list()
    assert rerun["_paid_prompt_tokens"].to_list() == first["_prompt_tokens"].to_list()
    assert rerun["_paid_completion_tokens"].to_list() == first["_completion_tokens"].to_list()
    before, after = summary_of(first_out), summary_of(rerun_out)
    assert after["cost_cny"] == 0
    assert after["answers_cost_cny"] == pytest.approx(before["cost_cny"]) == pytest.approx(before["answers_cost_cny"])
    assert f"{after['answers_cost_cny']:.6f} CNY when paid" in rerun_done.stdout  # the table a person reads


# ---- 5. size, stats, prune ----------------------------------------------------------------------

def test_two_thousand_journaled_rows_take_at_most_two_megabytes(tmp_path: Path, emu: EmulatorProcess) -> None:
    journal = tmp_path / "j.sqlite"
    done = run_cli(run_argv(write_input(tmp_path, 2000), tmp_path / "out.parquet", emu.base_url, 32), cli_env(journal))
    assert done.returncode == 0, done.stderr
    size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))
    assert size <= 2 * 1024 * 1024, f"{size / 2000:.0f} bytes per row"
    stats = cli("journal", "stats", "--journal", str(journal), journal=journal)
    assert stats.returncode == 0, stats.stderr
    assert "2000" in stats.stdout and "B/row" in stats.stdout and "ticket_qa ok" in stats.stdout


def test_prune_counts_first_then_deletes_what_was_paid_before_the_date(tmp_path: Path, emu: EmulatorProcess) -> None:
    journal = tmp_path / "j.sqlite"
    assert run_cli(run_argv(write_input(tmp_path, 20), tmp_path / "o.parquet", emu.base_url, CAP),
                   cli_env(journal)).returncode == 0
    kept = cli("journal", "prune", "--before", "2000-01-01", "--journal", str(journal), journal=journal)
    assert kept.returncode == 0 and "deleted 0 answers" in kept.stdout, kept.stdout + kept.stderr
    dry = cli("journal", "prune", "--before", "2999-01-01", "--dry-run", "--journal", str(journal), journal=journal)
    assert dry.returncode == 0 and "would delete 20 answers" in dry.stdout, dry.stdout + dry.stderr
    assert journal_count(journal) == 20
    gone = cli("journal", "prune", "--before", "2999-01-01", "--journal", str(journal), journal=journal)
    assert gone.returncode == 0 and "deleted 20 answers" in gone.stdout, gone.stdout + gone.stderr
    assert journal_count(journal) == 0


def test_journal_commands_refuse_a_missing_journal_or_a_bad_date(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    done = cli("journal", "stats", "--journal", str(missing), journal=missing)
    assert done.returncode == 2 and f"journal {missing} does not exist" in one_error_line(done.stderr)
    assert not missing.exists()
    missing.parent.mkdir(exist_ok=True)
    sqlite3.connect(missing).close()
    bad = cli("journal", "prune", "--before", "last tuesday", "--journal", str(missing), journal=missing)
    assert bad.returncode == 2 and "is not a date" in one_error_line(bad.stderr)


# ---- 6. rejudge ---------------------------------------------------------------------------------

def test_rejudge_judges_the_answers_of_the_current_schema_again_without_paying(tmp_path: Path,
                                                                             emu: EmulatorProcess) -> None:
    journal, schemas = tmp_path / "j.sqlite", tmp_path / "schemas"
    shutil.copytree(REPO / "schemas" / "ticket_qa", schemas / "ticket_qa")
    env = cli_env(journal, GLM_EXTRACT_SCHEMAS_DIR=str(schemas))
    done = run_cli(run_argv(write_input(tmp_path, 30), tmp_path / "o.parquet", emu.base_url, CAP), env)
    assert done.returncode == 0, done.stderr
    schema_path = schemas / "ticket_qa" / "schema.json"
    original = schema_path.read_text()
    schema = json.loads(original)
    schema["properties"]["summary"]["maxLength"] = 5  # every stored summary is longer
    schema_path.write_text(json.dumps(schema))
    emu.reset()
    argv = [sys.executable, "-m", "pipeline.cli", "rejudge", "--task", "ticket_qa", "--journal", str(journal)]
    other = run_cli(argv, env)  # keys include the schema: these answers belong to the original one
    assert other.returncode == 0, other.stderr
    assert "judged 0 stored answers" in other.stdout and "left 30 stored verdicts of another schema" in other.stdout
    assert _statuses(journal) == {"ok": 30}
    schema_path.write_text(original)  # back to the schema the answers were paid under
    db = sqlite3.connect(journal)
    try:
        with db:  # verdicts an older, stricter validator gave them
            db.execute("UPDATE results SET status = 'invalid'")
    finally:
        db.close()
    dry = run_cli([*argv, "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "invalid→ok: 30" in dry.stdout and "would change 30" in dry.stdout, dry.stdout
    assert "another schema" not in dry.stdout
    assert _statuses(journal) == {"invalid": 30}
    done = run_cli(argv, env)
    assert done.returncode == 0 and "changed 30" in done.stdout, done.stdout + done.stderr
    assert _statuses(journal) == {"ok": 30}
    assert emu.stats()["requests_received"] == 0


def _statuses(journal: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT status, count(*) FROM results GROUP BY status").fetchall())
    finally:
        db.close()
