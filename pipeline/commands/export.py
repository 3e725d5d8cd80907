"""``glm-extract export``: merge an enriched table into a warehouse. Thin: parses options, calls
:func:`pipeline.warehouse.export_table`, prints one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.warehouse import DEFAULT_TARGET, WarehouseError, export_table

EXIT_EXPORT_FAILED = 2
_TO_HELP = (
    "warehouse: a .duckdb/.db path or duckdb:///path (embedded, default), postgresql://user@host:5432/db, "
    "or dlt:<destination> (snowflake, bigquery, …); add ?schema=NAME to choose the schema"
)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export)


def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="enriched Parquet written by `glm-extract run`")],
    to: Annotated[str, typer.Option("--to", help=_TO_HELP)] = DEFAULT_TARGET,
    table: Annotated[str | None, typer.Option("--table", help="table name (default: the task's name)")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace",
        help="overwrite every matched row, even a stored ok answer with a row that is not ok, or a newer run's "
             "row with an older run's (DuckDB and PostgreSQL keep those by default)",
    )] = False,
) -> None:
    """Merge OUTPUT into a warehouse on (task, record id): re-exports update rows, never duplicate them.

    A stored ok answer is not replaced by a row that is not ok, nor a newer run's row by an older run's
    (--replace overwrites them). The run's summary is read from OUTPUT.summary.json when present and
    recorded in the `runs` table.
    """
    try:
        result = export_table(output, to, table=table, replace=replace)
    except WarehouseError as exc:
        Console(stderr=True).print(f"[bold red]export failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_EXPORT_FAILED) from exc
    Console().print(f"[green]✓[/] {escape(result.describe())}", highlight=False, soft_wrap=True)
