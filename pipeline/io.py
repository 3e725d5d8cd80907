"""Read inputs (one file, a glob, or a folder of Parquet), check the input contract, write outputs
atomically. The only module of the library that touches data files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob as globlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl
import polars.selectors as cs
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError, OutputError, first_line
from pipeline.schema_union import conform, decoded, is_string, unify_schemas, unreadable_part

# pyarrow's default allocator (mimalloc) keeps what it freed: streaming a large input in 1,000-row
# batches left far more RSS behind than the system allocator, at the same speed (docs/performance.md
# §3). This process's pyarrow allocations only; polars has its own allocator.
pa.set_memory_pool(pa.system_memory_pool())

#: A folder input skips names starting with these (hidden files, Spark's ``_SUCCESS`` and ``_temporary``),
#: and names the ``.parquet`` files so skipped (:func:`skipped_note`).
_IGNORED_PREFIXES = (".", "_")
_NAMED_SKIPPED = 3


@dataclass(frozen=True)
class InputInfo:
    """What the contract check learned about the input (``schema``: all files read as one table)."""

    files: tuple[Path, ...]
    rows: int
    columns: tuple[str, ...]
    schema: pa.Schema | None = None


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
        skipped = skipped_parquet(str(folder))
        raise InputError(f"input folder {folder} holds no .parquet file"
                         + (f" it reads: {describe_skipped(folder, skipped)}" if skipped else ""))
    return tuple(found)


def _ignored(path: Path, root: Path) -> bool:
    return any(part.startswith(_IGNORED_PREFIXES) for part in path.relative_to(root).parts)


def skipped_parquet(spec: str) -> tuple[Path, ...]:
    """The ``.parquet`` files a folder input skips (a name under it starting with ``_`` or ``.``), in
    order; none for a file or a glob, which read what they name."""
    folder = Path(spec)
    if any(ch in spec for ch in "*?[") or not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.rglob("*.parquet") if _ignored(p, folder) and p.is_file()))


def describe_skipped(folder: Path, skipped: Sequence[Path]) -> str:
    """What the folder rule skipped, in one line: the first files by name and how many more (pure)."""
    names = ", ".join(str(path) for path in skipped[:_NAMED_SKIPPED])
    more = f" and {len(skipped) - _NAMED_SKIPPED} more" if len(skipped) > _NAMED_SKIPPED else ""
    files = f"{len(skipped)} .parquet file" + ("s" if len(skipped) != 1 else "")
    them = "it" if len(skipped) == 1 else "them"
    return (f"skipped {files} under a name starting with '_' or '.' (Spark's _SUCCESS/_temporary convention): "
            f"{names}{more}; to read {them}, pass a glob such as '{folder}/**/*.parquet'")


def skipped_note(spec: str) -> str | None:
    """The line a run or an estimate prints when its folder input skips ``.parquet`` files, or None."""
    skipped = skipped_parquet(spec)
    return f"note: input folder {spec}: {describe_skipped(Path(spec), skipped)}" if skipped else None


def check_input(
    files: Sequence[Path], *, id_column: str, text_column: str, needed: Sequence[str]
) -> InputInfo:
    """Check the input contract; raise :class:`InputError` naming the file, column or row.

    Files are read as one table (:func:`unify_schemas`): columns matched by name, types widened
    where no value changes, a column some files lack is null there, dictionaries decoded. Every
    column must have a type polars reads; ids must be strings or integers."""
    metas = [_parquet_meta(path) for path in files]
    schema = unify_schemas([(path, meta[0]) for path, meta in zip(files, metas, strict=True)])
    rows = sum(meta[1] for meta in metas)
    _check_readable(files, [meta[0] for meta in metas])
    for column in dict.fromkeys([id_column, text_column, *needed]):
        lacking = [path for path, (file_schema, _) in zip(files, metas, strict=True)
                   if column not in file_schema.names]
        if lacking:
            names = metas[files.index(lacking[0])][0].names
            raise InputError(f"{lacking[0]}: missing column {column!r} (columns: {', '.join(names)})")
    text_type = schema.field(text_column).type
    if not is_string(text_type) and not pa.types.is_null(text_type):
        raise InputError(f"{files[0]}: text column {text_column!r} has type {text_type}, expected string")
    id_type = schema.field(id_column).type
    if not _id_type(id_type):
        where = next(path for path, (file_schema, _) in zip(files, metas, strict=True)
                     if not _id_type(decoded(file_schema.field(id_column).type)))
        raise InputError(f"{where}: id column {id_column!r} has type {id_type}; ids must be strings or integers "
                         "(cast the column to one of them)")
    _check_ids(files, schema.field(id_column), [meta[1] for meta in metas])
    return InputInfo(files=tuple(files), rows=rows, columns=tuple(schema.names), schema=schema)


def _id_type(kind: pa.DataType) -> bool:
    """Strings or integers (a null-typed column passes here: the id check names its first null row)."""
    return is_string(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _check_readable(files: Sequence[Path], schemas: Sequence[pa.Schema]) -> None:
    """Refuse, naming the file, column and type, a column polars cannot read (it would panic mid-run)."""
    for path, schema in zip(files, schemas, strict=True):
        for column in schema:
            part = unreadable_part(column.type)
            if part is not None:
                inner = "" if part.equals(column.type) else f" (holding {part})"
                raise InputError(f"{path}: column {column.name!r} has type {column.type}{inner}, which polars "
                                 "cannot read; cast it (decimal256 to decimal128 of precision <= 38 or to string, "
                                 "list_view to list) or drop the column")


def input_schema(files: Sequence[Path | str]) -> pa.Schema:
    """The unified schema of ``files`` (footers only), cached per process while the files are unchanged."""
    return _input_schema(tuple(_identity(Path(f)) for f in files))


def _identity(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _input_schema(files: tuple[tuple[str, int, int], ...]) -> pa.Schema:
    return unify_schemas([(Path(f), _parquet_meta(Path(f))[0]) for f, _, _ in files])


def _parquet_meta(path: Path) -> tuple[pa.Schema, int]:
    try:
        meta = pq.ParquetFile(path)
        return meta.schema_arrow, meta.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc


def _check_ids(files: Sequence[Path], id_field: pa.Field, file_rows: Sequence[int]) -> None:
    """Every id present and unique. Counted on 64-bit hashes, streamed: 8 bytes a row instead of
    the ids themselves (docs/performance.md §3); a hash clash only costs the exact pass below.
    Each file is scanned on its own and cast to the unified type, so mixed writers agree."""
    id_column = id_field.name  # typed as in the unified schema the caller has already read
    kind = pl.from_arrow(pa.schema([id_field]).empty_table()).schema[id_column]  # type: ignore[union-attr]
    ids = pl.concat([pl.scan_parquet(path).select(pl.col(id_column).cast(kind)) for path in files])
    try:
        counts = ids.select(pl.len(), pl.col(id_column).null_count().alias("nulls"),
                            pl.col(id_column).hash().n_unique().alias("unique")).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{files[0]}: cannot read column {id_column!r} ({first_line(exc)})") from exc
    rows, nulls, unique = counts.row(0)
    if nulls:
        row = int(ids.with_row_index().filter(pl.col(id_column).is_null()).select("index").head(1).collect().item())
        raise InputError(f"id column {id_column!r} is null at {_where(files, file_rows, row)} (every row needs an id)")
    if unique < rows:  # duplicates, or (rarely) two ids with one hash: find the first real duplicate
        first = ids.with_row_index().filter(pl.col(id_column).is_duplicated()).head(1).collect()
        if first.height:
            value = first.item(0, id_column)
            rows_of = ids.with_row_index().filter(pl.col(id_column) == value).select("index").head(2).collect()
            where = " and ".join(_where(files, file_rows, int(r)) for r in rows_of["index"])
            raise InputError(f"id column {id_column!r} has duplicate value {value!r} at {where}")


def _where(files: Sequence[Path], file_rows: Sequence[int], row: int) -> str:
    """``row <n> of <file>`` for global row ``row`` (``n`` counts within that file, from 0)."""
    offset = 0
    for path, count in zip(files, file_rows, strict=True):
        if row < offset + count:
            return f"row {row - offset} of {path}"
        offset += count
    return f"row {row} of {files[-1]}"


def iter_shards(files: Sequence[Path], size: int, schema: pa.Schema | None = None) -> Iterator[pl.DataFrame]:
    """Frames of exactly ``size`` rows (the last one shorter), streamed, in input order, every one
    with the input's unified schema (``schema``: the one :func:`check_input` read, else read again
    from the footers). An input without rows yields one empty, typed frame, so the output still
    gets its columns."""
    schema = schema or input_schema(files)
    buffer: list[pa.RecordBatch] = []
    held, emitted = 0, False
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
            buffer.extend(conform(pa.Table.from_batches([batch]), schema).to_batches())
            held += batch.num_rows
            while held >= size:
                table = pa.Table.from_batches(buffer, schema=schema)
                yield _frame(table.slice(0, size))
                emitted = True
                rest = table.slice(size)
                buffer, held = rest.to_batches(), rest.num_rows
    if held:
        yield _frame(pa.Table.from_batches(buffer, schema=schema))
    elif not emitted:
        yield _frame(schema.empty_table())


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


def check_output_target(output: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output that cannot or must not be written, before anything starts: not .parquet,
    a directory, a missing or read-only folder, or one of the input files (under any path)."""
    parent = output.parent if str(output.parent) else Path(".")
    if output.suffix != ".parquet":
        raise OutputError(f"output {output}: must end in .parquet (the output is always Parquet)")
    if output.is_dir():
        raise OutputError(f"output {output} is a directory; name a .parquet file")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable")
    for path in inputs:
        if same_path(output, path):
            raise OutputError(f"output {output} is the input file {path}: the run would replace its own input; "
                              "pick another --output")


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (under any spelling), or would."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def plan_output(output: Path, run_id: str, inputs: Sequence[Path] = ()) -> OutputPlan:
    """Check the output can be written before any money is spent; create the parts folder."""
    check_output_target(output, inputs)
    parent = output.parent if str(output.parent) else Path(".")
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
    with disk_errors(plan.target):  # pyarrow's writer reports a full disk as OSError(ENOSPC); polars' may not
        pq.write_table(frame.to_arrow(), path, compression="zstd")
    return path


def finish_output(plan: OutputPlan, parts: Sequence[Path], summary: dict[str, object]) -> None:
    """Concatenate the parts (streaming) into a temp file and write the summary beside it, fsync
    both, then rename them over the targets: a full disk leaves neither half-written."""
    tmp: Path | None = None
    summary_tmp: Path | None = None
    try:
        with disk_errors(plan.target):
            tmp = _temp_next_to(plan.target)
            concat_parts(parts, tmp)
            _fsync(tmp)
            summary_tmp = _json_temp(plan.summary_path, summary)
            os.replace(tmp, plan.target)
            os.replace(summary_tmp, plan.summary_path)
    finally:
        for leftover in (tmp, summary_tmp):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        discard_parts(plan)


@contextlib.contextmanager
def disk_errors(target: Path) -> Iterator[None]:
    """Turn a failed write (disk full, quota, I/O error) into one :class:`OutputError` line naming
    ``target``. Polars reports a failed write as its own error type carrying the OS message."""
    try:
        yield
    except OSError as exc:
        raise OutputError(_write_failure(target, exc.strerror or first_line(exc), exc.errno)) from None
    except pl.exceptions.PolarsError as exc:
        text = first_line(exc)
        if not any(sign in text for sign in _DISK_FULL_SIGNS):
            raise
        raise OutputError(_write_failure(target, text, errno.ENOSPC)) from None


_DISK_FULL_SIGNS = ("No space left", "Disk quota exceeded", "os error 28", "os error 122")


def _write_failure(target: Path, reason: str, code: int | None) -> str:
    what = "the disk is full" if code in (errno.ENOSPC, errno.EDQUOT) else "the write failed"
    return (f"output {target}: {what} ({reason}); nothing was written there and the answers are kept in "
            "the journal: free space (or pick another --output) and rerun the same command")


def concat_parts(parts: Sequence[Path], target: Path, rows_per_group: int = OUTPUT_ROW_GROUP_ROWS,
                 bytes_per_group: int = OUTPUT_ROW_GROUP_BYTES) -> None:
    """Copy the parts, in order, into one Parquet file; a row group closes at ``rows_per_group``
    rows or ``bytes_per_group`` bytes (in memory), whichever comes first.

    Only one row group's rows are in memory at a time, so memory does not grow with the rows as
    polars' ``scan_parquet(parts).sink_parquet`` did (docs/performance.md §3). Parts without rows
    add no row group; the schema is always written.
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
    tmp = _json_temp(path, value)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """``frame`` into a fsynced temp file next to ``path``, then renamed over it: a failure leaves
    the earlier file whole and no temp file behind."""
    tmp = _temp_next_to(path)
    try:
        frame.write_parquet(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_temp(path: Path, value: dict[str, object]) -> Path:
    """``value`` as indented JSON in a fsynced temp file next to ``path`` (removed on failure)."""
    tmp = _temp_next_to(path)
    try:
        tmp.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        _fsync(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


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



@dataclass(frozen=True)
class ShardSpec:
    """A slice of one input file: small enough to pass between processes (Prefect tasks).
    ``inputs`` lists every file of the run's input, so the slice is read with their unified schema."""

    index: int
    file: str
    offset: int
    rows: int
    inputs: tuple[str, ...] = ()


def plan_shards(info: InputInfo, size: int) -> list[ShardSpec]:
    """Cut every file into slices of at most ``size`` rows, in input order."""
    specs: list[ShardSpec] = []
    inputs = tuple(str(path) for path in info.files) if len(info.files) > 1 else ()
    for path in info.files:
        total = pq.ParquetFile(path).metadata.num_rows
        for offset in range(0, total, size):
            specs.append(ShardSpec(len(specs), str(path), offset, min(size, total - offset), inputs))
    return specs or [ShardSpec(0, str(info.files[0]), 0, 0, inputs)]  # an empty input still yields a typed table


def read_shard(spec: ShardSpec) -> pl.DataFrame:
    """The rows of one shard (reads only the row groups that hold them), in the input's unified schema."""
    frame = pl.scan_parquet(spec.file).slice(spec.offset, spec.rows).collect()
    if not spec.inputs:  # one file: only its dictionaries differ from the unified schema
        return frame.with_columns((cs.categorical() | cs.enum()).cast(pl.String))
    return _frame(conform(frame.to_arrow(), input_schema(spec.inputs)))  # as iter_shards conforms its batches


def plan_output_parts(output: Path, run_id: str) -> OutputPlan:
    """The parts folder of an existing run (a shard task in another process adds its part here)."""
    parent = output.parent if str(output.parent) else Path(".")
    parts = parent / f".{output.name}.parts-{run_id}"
    parts.mkdir(exist_ok=True)
    return OutputPlan(target=output, parts_dir=parts)
