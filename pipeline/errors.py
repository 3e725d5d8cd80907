"""The user-facing exception tree. Every message is one line that names the file, column or row.

::

    GlmExtractError                 base: the CLI prints str(exc) and exits non-zero
    ├── TaskError                   a task under schemas/ is missing or malformed
    ├── InputError                  the input Parquet breaks the contract (file, column, ids)
    ├── OutputError                 the output cannot be written
    └── RunAborted                  a systemic condition stopped the run (see pipeline.glm.errors)
"""

from __future__ import annotations


class GlmExtractError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 2


class TaskError(GlmExtractError):
    """A task definition is unknown or invalid."""


class InputError(GlmExtractError):
    """The input does not satisfy the input contract."""


class OutputError(GlmExtractError):
    """The output location cannot be written."""


class RunAborted(GlmExtractError):
    """The run stopped on a fatal, account-wide condition; the journal keeps what was answered."""

    exit_code = 3

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, or its type's name when it says nothing: what a
    one-line error quotes of a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
