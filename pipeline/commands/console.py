"""The terminal every command prints to, how a command ends on one of our errors, and the
settings a command's options make."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from pipeline.errors import GlmExtractError
from pipeline.settings import Settings

out = Console()
err = Console(stderr=True)

#: ``--column``/``--output-prefix`` of the commands that read an input through a task (run, estimate, evaluate)
ColumnOption = Annotated[list[str] | None, typer.Option(
    "--column", "-c", metavar="NAME=INPUT_COLUMN",
    help="read the task's column NAME (see `glm-extract tasks`) from INPUT_COLUMN; repeatable")]
OutputPrefixOption = Annotated[str, typer.Option(
    help="put this before every extraction column, e.g. x_ (when a schema field has an input column's name)")]
#: ``--max-tokens`` of the commands that render requests (run, estimate): it is part of every request
MaxTokensOption = Annotated[int | None, typer.Option(
    help="the answer's token limit (default: the task's max_tokens, else 4096); part of every request key")]


def fail(exc: GlmExtractError) -> typer.Exit:
    """Print ``exc`` as one red ``error:`` line on stderr (its text verbatim, brackets and all) and
    return the exit to raise with its exit code."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def settings_from(**options: Any) -> Settings:
    """Settings from the environment, overridden by the options given (None: not given); an invalid
    value is one line naming the setting."""
    try:
        return Settings(**{name: value for name, value in options.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise GlmExtractError(f"invalid setting {where}: {first['msg']}") from None
