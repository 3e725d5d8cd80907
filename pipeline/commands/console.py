"""The terminal every command prints to, and how a command ends on one of our errors."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.errors import GlmExtractError

out = Console()
err = Console(stderr=True)


def fail(exc: GlmExtractError) -> typer.Exit:
    """Print ``exc`` as one red ``error:`` line on stderr (its text verbatim, brackets and all) and
    return the exit to raise with its exit code."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)
