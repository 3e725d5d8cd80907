"""``glm-extract journal stats|prune`` and ``glm-extract rejudge``: look after the journal of paid
answers. Thin: parse options, call :mod:`pipeline.journal` / :mod:`pipeline.rejudge`, print."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.commands.console import fail, out, settings_from
from pipeline.errors import GlmExtractError
from pipeline.journal import Journal, JournalError, JournalStats, Pruned

journal_app = typer.Typer(no_args_is_help=True, help="Inspect and prune the journal of paid answers.")
_JOURNAL_HELP = "journal file (default: GLM_EXTRACT_JOURNAL_PATH or .glm-extract/journal.sqlite)"


def register(app: typer.Typer) -> None:
    """Add ``journal`` (stats, prune) and ``rejudge`` to ``app``."""
    app.add_typer(journal_app, name="journal")
    app.command("rejudge")(rejudge)


def existing_journal(path: Path | None) -> Path:
    """The journal to work on; it must exist (these commands never create one)."""
    chosen = path or settings_from().journal_path
    if not chosen.is_file():
        raise JournalError(f"journal {chosen} does not exist (pass --journal or set GLM_EXTRACT_JOURNAL_PATH)")
    return chosen


@journal_app.command("stats")
def stats(journal: Annotated[Path | None, typer.Option(help=_JOURNAL_HELP)] = None) -> None:
    """Rows, size on disk (per row), what the answers cost, by task and status."""
    try:
        with Journal(existing_journal(journal)) as opened:
            found = opened.stats()
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(render_stats(found), highlight=False, soft_wrap=True)


def render_stats(found: JournalStats) -> Table:
    per_row = f"{found.bytes_on_disk / found.rows:,.0f} B/row" if found.rows else "no rows"
    table = Table(title=f"journal {found.path}", show_header=False)
    table.add_row("rows", f"{found.rows}")
    table.add_row("size", f"{found.bytes_on_disk:,} bytes ({per_row})")
    table.add_row("paid", f"{found.paid_cny:.6f} CNY")
    table.add_row("paid between", f"{_when(found.oldest)} and {_when(found.newest)}")
    table.add_row("live claims", f"{found.live_claims}")
    for (task, status), count in found.by_task_status.items():
        table.add_row(f"{task} {status}", f"{count}")
    return table


@journal_app.command("prune")
def prune(
    before: Annotated[str, typer.Option(help="delete answers paid before this date (YYYY-MM-DD, UTC) or time")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would be deleted")] = False,
    journal: Annotated[Path | None, typer.Option(help=_JOURNAL_HELP)] = None,
) -> None:
    """Delete answers paid before DATE (rows asking them again will be paid again), then shrink the
    file. This is safe while a run uses the journal: the run keeps going, and the file is shrunk
    later (the line says so)."""
    try:
        cutoff = parse_before(before)
        with Journal(existing_journal(journal)) as opened:
            pruned = opened.prune(cutoff.timestamp(), dry_run=dry_run)
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(describe_prune(pruned, cutoff, dry_run=dry_run), highlight=False, soft_wrap=True)


def describe_prune(pruned: Pruned, cutoff: datetime, *, dry_run: bool) -> str:
    """The one line ``journal prune`` prints."""
    verb = "would delete" if dry_run else "deleted"
    line = f"{verb} {pruned.answers} answers paid before {cutoff.isoformat()}"
    if dry_run or pruned.shrunk:
        return line
    return (f"{line}; the file was not shrunk: a run is using the journal "
            "(run prune again when it is idle to give the space back to the disk)")


def parse_before(text: str) -> datetime:
    """An ISO date or date-time; naive values are UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise JournalError(f"--before {text!r} is not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch is not None else "-"


def rejudge(
    task: Annotated[str, typer.Option(help="task whose stored answers to judge again")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would change")] = False,
    journal: Annotated[Path | None, typer.Option(help=_JOURNAL_HELP)] = None,
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of task definitions")] = None,
) -> None:
    """Judge TASK's stored answers again under its current schema and validator, without paying.

    Only answers asked under the current schema are judged (a request key includes the schema: the
    others keep the verdicts of the schema they were asked under, counted and left). Verdicts that change
    are written back to the journal (unless --dry-run), so the next `run` of the same rows picks them
    up for free."""
    from pipeline.rejudge import rejudge_journal
    from pipeline.tasks import load_task

    try:
        path = existing_journal(journal)
        spec = load_task(task, settings_from(schemas_dir=schemas_dir).schemas_dir)
        with Journal(path) as opened:
            report = rejudge_journal(opened, spec, dry_run=dry_run)
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(report.describe(dry_run=dry_run), highlight=False, soft_wrap=True)
