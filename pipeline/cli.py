"""The ``glm-extract`` command line (typer + rich). Thin: it builds Settings and calls the library."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.endpoints import OFFLINE_BANNER, needs_emulator, resolve_target
from pipeline.errors import GlmExtractError
from pipeline.runner import PreparedRun, RunRequest, prepare_run, run_extraction
from pipeline.settings import Settings
from pipeline.tasks import list_tasks, load_task

app = typer.Typer(add_completion=False, no_args_is_help=True, help="GLM-4-Air structured extraction over Parquet.")
out = Console()
err = Console(stderr=True)
FAILURE_EXIT = 4
INTERRUPTED_EXIT = 130


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GlmExtractError(f"invalid setting {where}: {first['msg']}") from None


def fail(exc: GlmExtractError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


@app.command()
def run(
    task: Annotated[str, typer.Option(help="task name under schemas/ (see `glm-extract tasks`)")],
    input: Annotated[str, typer.Option("--input", "-i", help="Parquet file, glob or folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="enriched Parquet to write")],
    concurrency: Annotated[int | None, typer.Option(help="requests in flight at most (account tier)")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint instead of GLM")] = None,
    model: Annotated[str | None, typer.Option()] = None,
    mode: Annotated[str | None, typer.Option(help="json (response_format) or tools (function call)")] = None,
    shard_size: Annotated[int | None, typer.Option(help="rows per shard")] = None,
    journal: Annotated[Path | None, typer.Option(help="SQLite journal of paid answers")] = None,
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of task definitions")] = None,
    budget_cny: Annotated[float | None, typer.Option(help="stop sending new requests once spent")] = None,
    max_reasks: Annotated[int | None, typer.Option()] = None,
    emulator_latency: Annotated[str, typer.Option(help="offline emulator latency spec")] = "lognormal:0.15,0.3",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Extract typed fields from every row of INPUT into OUTPUT (one row out per row in)."""
    try:
        settings = _settings(concurrency=concurrency, base_url=base_url, model=model, mode=mode,
                             shard_size=shard_size, journal_path=journal, schemas_dir=schemas_dir,
                             budget_cny=budget_cny, max_reasks=max_reasks)
        prepared = prepare_run(RunRequest(task, input, output), settings)  # refuse bad input before anything
        if needs_emulator(settings):
            out.print(f"[bold yellow]{OFFLINE_BANNER}[/]", highlight=False)
        summary = _run_with_progress(prepared, settings, emulator_latency, quiet)
    except GlmExtractError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: answers so far are kept in the journal; rerun the same command to resume")
        raise typer.Exit(INTERRUPTED_EXIT) from None
    print_summary(summary)
    _exit_on_failure_ratio(summary, settings)


def _run_with_progress(prepared: PreparedRun, settings: Settings, latency: str, quiet: bool) -> dict[str, Any]:
    request = prepared.request
    with resolve_target(settings, emulator_latency=latency) as target:
        if quiet:
            return asyncio.run(run_extraction(request, settings, target, prepared=prepared))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            job = bar.add_task(f"{request.task}", total=None)
            return asyncio.run(
                run_extraction(request, settings, target, prepared=prepared,
                               on_progress=lambda n: bar.advance(job, n))
            )


def print_summary(summary: dict[str, Any]) -> None:
    """The end-of-run table a person reads; the same numbers are in <output>.summary.json."""
    table = Table(title=f"run {summary['run_id']} · {summary['task']}", show_header=False)
    counts = summary["status_counts"]
    requests = summary["requests"]
    latency = summary["latency_ms"]
    rows = [
        ("endpoint", f"{summary['endpoint']} {summary['base_url']}"
         + ("  (offline emulator: answers are synthetic)" if summary["offline_emulator"] else "")),
        ("rows", f"{summary['rows']}  " + "  ".join(f"{k}={v}" for k, v in counts.items())),
        ("requests", f"sent={requests['sent']} answered={requests['answered']} "
                     f"from_journal={requests['from_journal']} retries={requests['retries']} "
                     f"reasks={requests['reasks']}"),
        ("tokens", f"prompt={summary['tokens']['prompt']} completion={summary['tokens']['completion']}"),
        ("cost", f"{summary['cost_cny']:.6f} CNY"),
        ("latency", f"p50={latency['p50']} ms p95={latency['p95']} ms"),
        ("throughput", f"{summary['rows_per_second']} rows/s in {summary['seconds']} s"),
        ("output", f"{summary['output']} (+ .summary.json)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for error in summary["errors"][:5]:
        table.add_row(f"error {error['code']}", f"{error['count']} rows, e.g. {', '.join(error['example_ids'])}")
    out.print(table)


def _exit_on_failure_ratio(summary: dict[str, Any], settings: Settings) -> None:
    counts = summary["status_counts"]
    attempted = summary["rows"] - counts.get("skipped", 0)
    failed = counts.get("failed", 0)
    if attempted >= 10 and failed / attempted > settings.fatal_failure_ratio:
        err.print(f"[bold red]error:[/] {failed} of {attempted} rows failed "
                  f"(over {settings.fatal_failure_ratio:.0%}); see the errors above")
        raise typer.Exit(FAILURE_EXIT)


@app.command()
def tasks(
    schemas_dir: Annotated[Path, typer.Option(help="folder of task definitions")] = Path("schemas"),
) -> None:
    """List the tasks found under schemas/."""
    table = Table("task", "id column", "text column", "prompt version", "fields")
    table.columns[0].no_wrap = True
    try:
        for name in list_tasks(schemas_dir):
            spec = load_task(name, schemas_dir)
            table.add_row(name, spec.id_column, spec.text_column, spec.prompt_version, str(len(spec.output_fields)))
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(table)


@app.command()
def evaluate(
    task: Annotated[str, typer.Option(help="task whose [gold] mapping to use")],
    output: Annotated[Path, typer.Option("--output", "-o", help="an enriched Parquet written by `run`")],
    schemas_dir: Annotated[Path, typer.Option(help="folder of task definitions")] = Path("schemas"),
) -> None:
    """Score an enriched table against its gold_* columns (field-level, Markdown)."""
    import polars as pl

    from pipeline.evaluate import parse_gold_table, render_markdown, score_table

    try:
        spec = load_task(task, schemas_dir)
        if not output.is_file():
            raise GlmExtractError(f"output not found: {output}")
        evaluation = score_table(pl.read_parquet(output), parse_gold_table(spec.gold))
    except ValueError as exc:
        raise fail(GlmExtractError(f"{output}: {exc}")) from None
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(render_markdown(evaluation), highlight=False, soft_wrap=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def emulator(ctx: typer.Context) -> None:
    """Run the local GLM emulator (flags: see `glm-extract emulator --help-emulator`)."""
    from emulator.__main__ import main as emulator_main

    args = ["--help" if a == "--help-emulator" else a for a in ctx.args]
    raise typer.Exit(emulator_main(args) or 0)


def _register_plugins() -> None:
    from pipeline.commands import export, journal, prefect

    export.register(app)
    prefect.register(app)
    journal.register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _register_plugins()
    app()


if __name__ == "__main__":
    main()
