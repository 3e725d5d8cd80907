"""How rows end, and when a run counts as failed: the statuses and the failure-ratio rule, defined
once for the enriched table, the summary, the CLI, the Prefect flow and the warehouse's runs table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.wording import plural

if TYPE_CHECKING:
    from pipeline.tasks import TaskSpec

#: A row's ``_status``, in the order the summary's ``status_counts`` lists them (docs/contracts.md §3).
STATUSES = ("ok", "invalid", "failed", "filtered", "skipped")

#: Fewer attempted rows than this never fail a run by ratio: one failed row of three says little.
MIN_ROWS_FOR_FAILURE_RATIO = 10


@dataclass(frozen=True)
class ExcessFailures:
    """More of a run's attempted rows (all but ``skipped``) failed than allowed."""

    failed: int
    attempted: int

    def describe(self, allowed_ratio: float) -> str:
        return f"{self.failed} of {plural(self.attempted, 'row')} failed (over {allowed_ratio:.0%})"


def excess_failures(status_counts: Mapping[str, int], allowed_ratio: float) -> ExcessFailures | None:
    """The failure-ratio rule: too many ``failed`` rows among the attempted ones, or None.

    The output is written either way; the CLI exits non-zero and the flow run fails on a verdict."""
    attempted = sum(n for status, n in status_counts.items() if status != "skipped")
    failed = status_counts.get("failed", 0)
    if attempted >= MIN_ROWS_FOR_FAILURE_RATIO and failed / attempted > allowed_ratio:
        return ExcessFailures(failed, attempted)
    return None


@dataclass(frozen=True)
class LocalOutcome:
    """How a row ends without a request."""

    status: str
    code: str
    message: str


def local_outcome(task: TaskSpec, row: Mapping[str, Any]) -> LocalOutcome | None:
    """The rule that decides, without the network, that a row is never sent (None: it is sent):
    blank text is ``skipped``, text over the task's ``max_input_chars`` is ``failed``. The engine and
    the estimate both ask it."""
    text = row.get(task.text_column)
    if text is None or (isinstance(text, str) and not text.strip()):
        return LocalOutcome("skipped", "empty_text", "the text column is null or blank")
    limit = task.max_input_chars
    if limit is not None and isinstance(text, str) and len(text) > limit:
        return LocalOutcome("failed", "input_too_long",
                            f"text has {len(text)} characters, over the task's max_input_chars={limit}")
    return None
