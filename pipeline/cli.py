"""The ``glm-extract`` command line (typer + rich). Thin: it builds Settings and calls the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline import io
from pipeline.commands.console import ColumnOption, MaxTokensOption, OutputPrefixOption, err, fail, out, settings_from
from pipeline.endpoints import OFFLINE_BANNER, needs_emulator, resolve_target
from pipeline.errors import GlmExtractError
from pipeline.interrupts import Terminated, run_stoppable
from pipeline.runner import PreparedRun, RunRequest, prepare_run, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from pipeline.tasks import (
    bind_columns,
    describe_folder,
    load_task,
    parse_column_mapping,
    search_path,
    survey_tasks,
)
from pipeline.wording import plural

app = typer.Typer(pretty_exceptions_show_locals=False,  # a traceback's locals may hold the key
                  add_completion=False, no_args_is_help=True, help="GLM-4-Air structured extraction over Parquet.")
FAILURE_EXIT = 4
INTERRUPTED_EXIT = 130



def user_error(group: BaseExceptionGroup[Any]) -> GlmExtractError:
    """The first error of ours inside ``group`` (re-raise the group when it holds none)."""
    mine = group.subgroup(GlmExtractError)
    while mine is not None:
        first = mine.exceptions[0]
        if isinstance(first, GlmExtractError):
            return first
        mine = first.subgroup(GlmExtractError) if isinstance(first, BaseExceptionGroup) else None
    raise group


@app.command()
def run(
    task: Annotated[str, typer.Option(help="task name under schemas/ (see `glm-extract tasks`)")],
    input: Annotated[str, typer.Option("--input", "-i", help="Parquet file, glob or folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="enriched Parquet to write")],
    concurrency: Annotated[int | None, typer.Option(help="requests in flight at most (account tier)")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint instead of GLM")] = None,
    model: Annotated[str | None, typer.Option(help="GLM model id (default glm-4-air-250414); part of every "
                                                   "request, so another model never reuses these answers")] = None,
    mode: Annotated[str | None, typer.Option(help="json (response_format) or tools (function call)")] = None,
    shard_size: Annotated[int | None, typer.Option(help="rows per shard")] = None,
    journal: Annotated[Path | None, typer.Option(help="SQLite journal of paid answers")] = None,
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of task definitions")] = None,
    budget_cny: Annotated[float | None, typer.Option(
        help="never spend more (CNY): a request is sent only if its worst case (prompt by the rule of thumb "
             "+ 25 % or the ratio the run's answers showed for its kind of text (ASCII, each script), plus "
             "max_tokens; cached tokens at the full price unless their price is set) fits; rows not sent end "
             "skipped/budget_reached, paid rows whose re-ask did not fit end invalid/budget_reached (a rerun "
             "sends only the re-ask)")] = None,
    max_reasks: Annotated[int | None, typer.Option(help="re-asks (each paid) after an answer that fails the "
                                                        "schema, before the row ends `invalid` (default 2); also "
                                                        "bounds the re-asks owed from an earlier run (`0`: none is "
                                                        "sent, and the row stays owed)")] = None,
    max_tokens: MaxTokensOption = None,
    column: ColumnOption = None,
    output_prefix: OutputPrefixOption = "",
    emulator_latency: Annotated[str | None, typer.Option(
        help="offline emulator latency (default: its profile's, 'realistic' = tokens:0.4,20000,60,0.25)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Extract typed fields from every row of INPUT into OUTPUT (one row out per row in)."""
    try:
        settings = settings_from(concurrency=concurrency, base_url=base_url, model=model, mode=mode,
                             shard_size=shard_size, journal_path=journal, schemas_dir=schemas_dir,
                             budget_cny=budget_cny, max_reasks=max_reasks, max_tokens=max_tokens)
        request = RunRequest(task, input, output, columns=parse_column_mapping(column or []),
                             output_prefix=output_prefix)
        prepared = prepare_run(request, settings)  # refuse bad input before anything
        note_skipped(input)
        if needs_emulator(settings):
            out.print(f"[bold yellow]{OFFLINE_BANNER}[/]", highlight=False)
        summary = _run_with_progress(prepared, settings, emulator_latency, quiet)
    except Terminated as exc:  # SIGTERM, handled like Ctrl-C
        err.print(escape(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except GlmExtractError as exc:
        raise fail(exc) from None
    except ExceptionGroup as group:  # a shard task's error (e.g. the disk filled while writing a part)
        raise fail(user_error(group)) from None
    except KeyboardInterrupt:
        err.print("interrupted: answers so far are kept in the journal; rerun the same command to resume")
        raise typer.Exit(INTERRUPTED_EXIT) from None
    print_summary(summary)
    _exit_on_failure_ratio(summary, settings)


def note_skipped(input_spec: str) -> None:
    """Name, on stderr, the .parquet files a folder input skips (never drop rows without a word)."""
    note = io.skipped_note(input_spec)
    if note is not None:
        err.print(note, markup=False, highlight=False, soft_wrap=True)


def _run_with_progress(prepared: PreparedRun, settings: Settings, latency: str | None, quiet: bool) -> RunSummary:
    request = prepared.request
    with resolve_target(settings, emulator_latency=latency) as target:
        if quiet:
            return run_stoppable(run_extraction(request, settings, target, prepared=prepared))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            job = bar.add_task(f"{request.task}", total=None)
            return run_stoppable(
                run_extraction(request, settings, target, prepared=prepared,
                               on_progress=lambda n: bar.advance(job, n))
            )


def print_summary(summary: RunSummary) -> None:
    """The end-of-run table a person reads; the same numbers are in <output>.summary.json."""
    table = Table(title=f"run {summary.run_id} · {summary.task}", show_header=False)
    requests, tokens, latency = summary.requests, summary.tokens, summary.latency_ms
    rows = [
        ("endpoint", f"{summary.endpoint} {summary.base_url}"
         + ("  (emulator: answers are synthetic)" if summary.synthetic else "")),
        ("rows", f"{summary.rows}  " + "  ".join(f"{k}={v}" for k, v in summary.status_counts.items())),
        ("requests", f"sent={requests.sent} answered={requests.answered} from_journal={requests.from_journal} "
                     f"retries={requests.retries} reasks={requests.reasks}"),
        ("tokens", tokens.describe()),
        ("cost", f"{summary.cost_cny:.6f} CNY  ({summary.cost_split.describe()})"),
        ("answers cost", f"{summary.answers_cost_cny:.6f} CNY when paid (this run or an earlier one)"),
        *([("budget", summary.budget.table_line())] if summary.budget is not None else []),
        ("latency", "no request answered" if latency.p50 is None else f"p50={latency.p50} ms p95={latency.p95} ms"),
        ("throughput", f"{summary.rows_per_second} rows/s in {summary.seconds} s"),
        ("output", f"{summary.output} (+ .summary.json)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for error in summary.errors[:5]:
        table.add_row(f"error {error.code}", f"{plural(error.count, 'row')}, e.g. {', '.join(error.example_ids)}")
    out.print(table)


def _exit_on_failure_ratio(summary: RunSummary, settings: Settings) -> None:
    verdict = summary.excess_failures(settings.fatal_failure_ratio)
    if verdict is not None:
        err.print(f"[bold red]error:[/] {verdict.describe(settings.fatal_failure_ratio)}; see the errors above")
        raise typer.Exit(FAILURE_EXIT)


@app.command()
def tasks(
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of your own tasks (searched before the "
                                                          "bundled ones)")] = None,
) -> None:
    """List the tasks: the input columns each needs and reads, or why it does not load (exit 2 then)."""
    try:
        folders = search_path(settings_from(schemas_dir=schemas_dir).schemas_dir)
    except GlmExtractError as exc:
        raise fail(exc) from None
    table = Table("task", "required columns", "optional columns (default)", "prompt version", "fields",
                  title=f"tasks in {', '.join(describe_folder(f) for f in folders)}")
    table.columns[0].no_wrap = True
    listings = survey_tasks(folders)
    for item in listings:
        spec = item.spec
        if spec is None:
            table.add_row(item.name, f"[red]does not load:[/] {item.error}", "", "", "")
            continue
        optional = ", ".join(f"{name} ({spec.default_for(name)!r})" for name in spec.optional_columns)
        table.add_row(item.name, f"{spec.id_column} (id), {spec.text_column} (text)", optional or "–",
                      spec.prompt_version, str(len(spec.output_fields)))
    out.print(table)
    if not listings:
        raise fail(GlmExtractError(f"no task found in {', '.join(describe_folder(f) for f in folders)}"))
    out.print("Map a column of another name with --column NAME=INPUT_COLUMN (e.g. --column text=content).")
    broken = [item for item in listings if item.spec is None]
    if broken:
        raise fail(GlmExtractError(f"{plural(len(broken), 'task')} do not load: {', '.join(i.name for i in broken)}"))


@app.command()
def evaluate(
    task: Annotated[str, typer.Option(help="task whose fields and gold mapping to use")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="an enriched Parquet written by `run`")] = None,
    gold: Annotated[list[str] | None, typer.Option(
        metavar="FIELD=COLUMN", help="score output FIELD against gold COLUMN (repeatable; replaces the task's "
                                           "gold mapping: only these fields are scored)")] = None,
    gold_file: Annotated[Path | None, typer.Option(
        help="Parquet holding the gold columns, joined on the task's id column (see --column)")] = None,
    column: ColumnOption = None,
    output_prefix: OutputPrefixOption = "",
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        metavar="A B", help="instead of scoring: rows in one table only, status changes, and per field the changes "
                             "over rows ok in both")] = None,
    changes: Annotated[Path | None, typer.Option(
        help="with --compare: write every difference here (.parquet; replaces only an earlier changes table)")] = None,
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of your own tasks")] = None,
) -> None:
    """Score an enriched table against gold columns, or compare two outputs (field-level, Markdown)."""
    from pipeline.evaluation_command import compare_report, evaluation_report

    try:
        spec = bind_columns(load_task(task, settings_from(schemas_dir=schemas_dir).schemas_dir),
                            parse_column_mapping(column or []), output_prefix)
        if changes is not None and compare is None:
            raise GlmExtractError(f"--changes {changes} needs --compare A B (it writes what changed between them)")
        if compare is not None:
            report = compare_report(spec, compare, changes)
        elif output is None:
            raise GlmExtractError("evaluate needs --output (an enriched table) or --compare A B")
        else:
            report = evaluation_report(spec, output, parse_column_mapping(gold or [], "--gold"), gold_file)
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(report, highlight=False, soft_wrap=True, markup=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def emulator(ctx: typer.Context) -> None:
    """Run the local GLM emulator (--profile, --tier, --latency, --fault …: see `glm-extract emulator --help`)."""
    from emulator.__main__ import main as emulator_main

    args = ["--help" if a == "--help-emulator" else a for a in ctx.args]
    raise typer.Exit(emulator_main(args) or 0)


def _register_plugins() -> None:
    from pipeline.commands import estimate, export, journal, plugins

    estimate.register(app)
    export.register(app)
    journal.register(app)
    plugins.register_installed(app)  # prefect-setup, serve: flows.commands via the entry point


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _register_plugins()
    app()


if __name__ == "__main__":
    main()
