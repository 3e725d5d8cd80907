"""Read inputs (one file, a glob, or a folder of Parquet), check the input contract, write outputs
atomically. The only module of the library that touches data files."""

from __future__ import annotations

import fcntl
import glob as globlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError, OutputError

# pyarrow's default allocator (mimalloc) keeps what it freed: streaming a 1M-row input in 1,000-row
# batches left +90 MB of RSS behind, the system allocator +11 MB, at the same speed
# (docs/performance.md §3). This process's pyarrow allocations only; polars has its own allocator.
pa.set_memory_pool(pa.system_memory_pool())

_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_IGNORED_PREFIXES = (".", "_")


@dataclass(frozen=True)
class InputInfo:
    """What the contract check learned about the input."""

    files: tuple[Path, ...]
    rows: int
    columns: tuple[str, ...]


def resolve_inputs(spec: str) -> tuple[Path, ...]:
    """The Parquet files named by a path, a glob or a folder, in a stable order."""
    if any(ch in spec for ch in "*?["):
        files = tuple(Path(p) for p in sorted(globlib.glob(spec, recursive=True)) if Path(p).is_file())
        if not files:
            raise InputError(f"input glob {spec!r} matches no file")
        return files
    path = Path(spec)
    if path.is_dir():
        return _folder_files(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    return (path,)


def _folder_files(folder: Path) -> tuple[Path, ...]:
    found = sorted(p for p in folder.rglob("*") if p.is_file() and not _ignored(p, folder))
    others = [p for p in found if p.suffix != ".parquet"]
    if others:
        raise InputError(
            f"input folder {folder} holds a file that is not .parquet: {others[0]}; "
            f"pass a glob such as '{folder}/**/*.parquet' to read only the Parquet files"
        )
    if not found:
        raise InputError(f"input folder {folder} holds no .parquet file")
    return tuple(found)


def _ignored(path: Path, root: Path) -> bool:
    return any(part.startswith(_IGNORED_PREFIXES) for part in path.relative_to(root).parts)


def check_input(
    files: Sequence[Path], *, id_column: str, text_column: str, needed: Sequence[str]
) -> InputInfo:
    """Check the input contract; raise :class:`InputError` naming the file, column or row."""
    schema: pa.Schema | None = None
    rows = 0
    for path in files:
        file_schema, file_rows = _parquet_meta(path)
        if schema is not None and file_schema.names != schema.names:
            raise InputError(f"{path}: columns {file_schema.names} differ from {files[0]}: {schema.names}")
        if schema is not None and not file_schema.equals(schema):
            bad = next(f.name for f in schema if file_schema.field(f.name).type != f.type)
            raise InputError(f"{path}: column {bad!r} has type {file_schema.field(bad).type}, "
                             f"but {files[0]} has {schema.field(bad).type}")
        schema, rows = schema or file_schema, rows + file_rows
    assert schema is not None
    for column in dict.fromkeys([id_column, text_column, *needed]):
        if column not in schema.names:
            raise InputError(f"{files[0]}: missing column {column!r} (columns: {', '.join(schema.names)})")
    text_type = schema.field(text_column).type
    if text_type not in _STRING_TYPES and not pa.types.is_null(text_type):
        raise InputError(f"{files[0]}: text column {text_column!r} has type {text_type}, expected string")
    _check_ids(files, id_column)
    return InputInfo(files=tuple(files), rows=rows, columns=tuple(schema.names))


def _parquet_meta(path: Path) -> tuple[pa.Schema, int]:
    try:
        meta = pq.ParquetFile(path)
        return meta.schema_arrow, meta.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from exc


def _check_ids(files: Sequence[Path], id_column: str) -> None:
    """Every id present and unique. Counted on 64-bit hashes, streamed: 8 bytes a row instead of
    the ids themselves (+145 MB at 1M rows before); a hash clash only costs the exact pass below."""
    ids = pl.scan_parquet(list(files)).select(pl.col(id_column))
    try:
        counts = ids.select(pl.len(), pl.col(id_column).null_count().alias("nulls"),
                            pl.col(id_column).hash().n_unique().alias("unique")).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{files[0]}: cannot read column {id_column!r} ({_first_line(exc)})") from exc
    rows, nulls, unique = counts.row(0)
    if nulls:
        row = int(ids.with_row_index().filter(pl.col(id_column).is_null()).select("index").head(1).collect().item())
        raise InputError(f"id column {id_column!r} is null at row {row} (every row needs an id)")
    if unique < rows:  # duplicates, or (rarely) two ids with one hash: find the first real duplicate
        first = ids.with_row_index().filter(pl.col(id_column).is_duplicated()).head(1).collect()
        if first.height:
            row, value = first.row(0)
            raise InputError(f"id column {id_column!r} has duplicate value {value!r} (first at row {row})")


def iter_shards(files: Sequence[Path], size: int) -> Iterator[pl.DataFrame]:
    """Frames of exactly ``size`` rows (the last one shorter), streamed, in input order.
    An input without rows yields one empty, typed frame, so the output still gets its columns."""
    buffer: list[pa.RecordBatch] = []
    held, emitted = 0, False
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
            buffer.append(batch)
            held += batch.num_rows
            while held >= size:
                table = pa.Table.from_batches(buffer)
                yield _frame(table.slice(0, size))
                emitted = True
                rest = table.slice(size)
                buffer, held = rest.to_batches(), rest.num_rows
    if held:
        yield _frame(pa.Table.from_batches(buffer))
    elif not emitted:
        yield _frame(pq.ParquetFile(files[0]).schema_arrow.empty_table())


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table.combine_chunks())
    assert isinstance(frame, pl.DataFrame)
    return frame


@dataclass(frozen=True)
class OutputPlan:
    """Where a run writes: parts in a hidden folder next to the target, then one atomic rename."""

    target: Path
    parts_dir: Path
    lock: OutputLock | None = None

    @property
    def summary_path(self) -> Path:
        return summary_path_for(self.target)


class OutputLock:
    """An exclusive ``flock`` on ``.<output>.lock``: one run writes an output path at a time.
    The kernel drops it when a process dies, so a killed run never blocks the next one; a clean
    release removes the file. A lock taken on a file that was unlinked meanwhile is retaken."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(f".{output.name}.lock")
        self._fd: int | None = None
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"output {output} is being written by another run; wait for it or pick "
                                  "another --output") from None
            if _same_file(fd, self.path):
                self._fd = fd
                return
            os.close(fd)  # the holder released and removed it between our open and flock
        raise OutputError(f"output {output}: could not take the lock {self.path}")

    def release(self) -> None:
        """Idempotent: remove the lock file, then drop the lock."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def summary_path_for(output: Path) -> Path:
    return output.with_name(output.name + ".summary.json")


def plan_output(output: Path, run_id: str) -> OutputPlan:
    """Check the output can be written before any money is spent; create the parts folder."""
    parent = output.parent if str(output.parent) else Path(".")
    if output.suffix != ".parquet":
        raise OutputError(f"output {output}: must end in .parquet")
    if output.is_dir():
        raise OutputError(f"output {output} is a directory; name a .parquet file")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable")
    lock = OutputLock(output)  # before touching stale files: they may be another live run's
    try:
        for stale in parent.glob(f".{output.name}.parts-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale_tmp in parent.glob(f".{output.name}.*.tmp"):  # a write killed before its rename
            stale_tmp.unlink(missing_ok=True)
        parts = parent / f".{output.name}.parts-{run_id}"
        parts.mkdir()
    except OSError as exc:
        lock.release()
        raise OutputError(f"output folder {parent}: cannot prepare the output ({exc.strerror})") from exc
    return OutputPlan(target=output, parts_dir=parts, lock=lock)


OUTPUT_ROW_GROUP_ROWS = 100_000
OUTPUT_ROW_GROUP_BYTES = 16 * 2**20  # ~16k rows of ticket_qa; bounds the join's memory


def write_part(plan: OutputPlan, index: int, frame: pl.DataFrame) -> Path:
    path = plan.parts_dir / f"part-{index:06d}.parquet"
    frame.write_parquet(path)
    return path


def finish_output(plan: OutputPlan, parts: Sequence[Path], summary: dict[str, object]) -> None:
    """Concatenate the parts (streaming) into a temp file, fsync, rename over the target."""
    tmp = _temp_next_to(plan.target)
    try:
        concat_parts(parts, tmp)
        _fsync(tmp)
        os.replace(tmp, plan.target)
        write_json_atomic(plan.summary_path, summary)
    finally:
        tmp.unlink(missing_ok=True)
        discard_parts(plan)


def concat_parts(parts: Sequence[Path], target: Path, rows_per_group: int = OUTPUT_ROW_GROUP_ROWS,
                 bytes_per_group: int = OUTPUT_ROW_GROUP_BYTES) -> None:
    """Copy the parts, in order, into one Parquet file; a row group closes at ``rows_per_group``
    rows or ``bytes_per_group`` bytes (in memory), whichever comes first.

    Only one row group's rows are in memory at a time: +40 MB RSS at any size, where polars'
    ``scan_parquet(parts).sink_parquet`` peaked at +150 MB at 100k rows and grew with the rows
    (docs/performance.md). Parts without rows add no row group; the schema is always written.
    """
    if not parts:
        raise ValueError("no parts to concatenate")
    schema = pq.read_schema(parts[0])
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        pending: list[pa.Table] = []
        pending_rows = pending_bytes = 0
        for part in parts:
            with pq.ParquetFile(part) as source:
                table = source.read(use_threads=False)
            pending.append(table)
            pending_rows += table.num_rows
            pending_bytes += table.nbytes
            if pending_rows >= rows_per_group or pending_bytes >= bytes_per_group:
                writer.write_table(pa.concat_tables(pending), row_group_size=pending_rows)
                pending, pending_rows, pending_bytes = [], 0, 0
        if pending_rows:
            writer.write_table(pa.concat_tables(pending), row_group_size=pending_rows)


def discard_parts(plan: OutputPlan) -> None:
    """Remove the parts folder and let the next run have the output path."""
    shutil.rmtree(plan.parts_dir, ignore_errors=True)
    if plan.lock is not None:
        plan.lock.release()


def write_json_atomic(path: Path, value: dict[str, object]) -> None:
    tmp = _temp_next_to(path)
    try:
        tmp.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_next_to(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; the result is for other readers too
    os.close(fd)
    return Path(name)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ShardSpec:
    """A slice of one input file: small enough to pass between processes (Prefect tasks)."""

    index: int
    file: str
    offset: int
    rows: int


def plan_shards(info: InputInfo, size: int) -> list[ShardSpec]:
    """Cut every file into slices of at most ``size`` rows, in input order."""
    specs: list[ShardSpec] = []
    for path in info.files:
        total = pq.ParquetFile(path).metadata.num_rows
        for offset in range(0, total, size):
            specs.append(ShardSpec(len(specs), str(path), offset, min(size, total - offset)))
    return specs or [ShardSpec(0, str(info.files[0]), 0, 0)]  # an empty input still yields a typed table


def read_shard(spec: ShardSpec) -> pl.DataFrame:
    """The rows of one shard (reads only the row groups that hold them)."""
    return pl.scan_parquet(spec.file).slice(spec.offset, spec.rows).collect()


def plan_output_parts(output: Path, run_id: str) -> OutputPlan:
    """The parts folder of an existing run (a shard task in another process adds its part here)."""
    parent = output.parent if str(output.parent) else Path(".")
    parts = parent / f".{output.name}.parts-{run_id}"
    parts.mkdir(exist_ok=True)
    return OutputPlan(target=output, parts_dir=parts)
