"""Joining shard parts into the one output file: order, types and row groups kept, memory bounded;
a full disk is one line, never a partial output."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.errors import OutputError
from pipeline.io import concat_parts, finish_output, plan_output, write_part
from tests.reliability.support import one_error_line

DTYPE = {"_record_id": pl.Utf8, "extraction": pl.Struct({"topic": pl.Utf8, "tags": pl.List(pl.Utf8)}),
         "_attempts": pl.Int32}


def part(path: Path, start: int, rows: int) -> Path:
    frame = pl.DataFrame({
        "_record_id": [f"r{i}" for i in range(start, start + rows)],
        "extraction": [{"topic": f"t{i}", "tags": [str(i)] * (i % 3)} if i % 4 else None
                       for i in range(start, start + rows)],
        "_attempts": list(range(start, start + rows)),
    }, schema=DTYPE)  # fmt: skip
    frame.write_parquet(path)
    return path


def test_parts_are_joined_in_order_with_their_types(tmp_path: Path) -> None:
    parts = [part(tmp_path / f"p{i}.parquet", 10 * i, 10) for i in range(5)]
    out = tmp_path / "out.parquet"
    concat_parts(parts, out, rows_per_group=25)
    joined = pl.read_parquet(out)
    assert joined.schema == pl.Schema(DTYPE)
    expected = pl.concat([pl.read_parquet(p) for p in parts])
    assert joined.equals(expected)
    groups = [pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(out).num_row_groups)]
    assert groups == [30, 20]  # parts are never split; a group closes once it holds ≥ 25 rows


def test_an_empty_part_gives_an_empty_typed_table(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    concat_parts([part(tmp_path / "empty.parquet", 0, 0)], out)
    joined = pl.read_parquet(out)
    assert joined.height == 0 and joined.schema == pl.Schema(DTYPE)
    assert pq.ParquetFile(out).num_row_groups == 0


def test_no_parts_is_a_bug_not_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no parts"):
        concat_parts([], tmp_path / "out.parquet")


# -- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real filesystem that fills up (needs root to mount; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def noise_tickets(n: int) -> pl.DataFrame:
    """Tickets whose text does not compress, so the output outgrows the tiny disk."""
    texts = [f"Customer: order {os.urandom(96).hex()} never arrived." for _ in range(n)]
    return pl.DataFrame({"ticket_id": [f"t-{i}" for i in range(n)], "channel": ["chat"] * n, "text": texts})


def test_a_disk_filling_up_mid_run_is_one_line_exit_2_and_nothing_partial(tmp_path: Path, tiny_disk: Path) -> None:
    from emulator.config import EmulatorConfig, LatencySpec
    from emulator.process import serve_in_thread
    from pipeline.cli import app

    noise_tickets(2000).write_parquet(tmp_path / "in.parquet")
    output = tiny_disk / "out.parquet"
    with serve_in_thread(EmulatorConfig(concurrency=16, latency=LatencySpec.parse("fixed:0.0005"), seed=1)) as emu:
        result = CliRunner().invoke(app, ["run", "--task", "ticket_qa", "-i", str(tmp_path / "in.parquet"),
                                          "-o", str(output), "-q", "--base-url", emu.base_url])
    assert result.exit_code == 2, (result.exception, result.stderr)
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: output {output}: the disk is full (") and "No space left on device" in line
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == []  # no output, no summary, no parts, no lock


def test_a_disk_full_at_the_final_join_leaves_neither_output_nor_summary(tmp_path: Path, tiny_disk: Path) -> None:
    output = tiny_disk / "out.parquet"
    plan = plan_output(output, "run-1")
    parts = [write_part(plan, i, noise_tickets(100)) for i in range(2)]
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(tiny_disk).free - 8192))  # parts stay, the join cannot fit
    with pytest.raises(OutputError, match=rf"output {output}: the disk is full .*rerun the same command"):
        finish_output(plan, parts, {"rows": 200})
    filler.unlink()
    assert sorted(p.name for p in tiny_disk.iterdir()) == []
