"""Judge stored answers again under a task's current schema and validator, without paying.

The journal keeps each answer's parsed form and, where it differs, the model's own text; both
are judged exactly as a live answer is (:func:`pipeline.validate.judge`). There is no re-ask: an
answer the current schema refuses ends ``invalid`` (a re-ask would be a new, paid request), except
one whose re-ask the budget did not allow: it keeps waiting for that re-ask unless it now passes.
Only ``ok`` and ``invalid`` verdicts are judged again; a platform verdict (filtered, failed) stays.

Only answers asked under the task's current schema (same ``schema_id``) are judged: a request key
includes the schema (it travels in the request), so a run reads an answer's verdict only under the
schema it was asked under, and each answer must keep that schema's verdict. What else a key holds
(prompt version, template, instructions, model, endpoint) does not change what an answer is worth
against one schema, so it does not matter here. A changed schema reuses no stored answer: its runs
ask again. (The request carries the schema without annotations, :func:`pipeline.prompts.compact_schema`:
a schema changed only in ``title``/``$comment`` keeps its keys, and its runs read the verdicts of the
schema before, which validates alike; ``rejudge`` under it leaves them, as another schema's.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema_rs
import orjson

from pipeline.journal import Journal, JournalEntry, is_reask_due
from pipeline.tables import extraction_dtype, has_free_form, json_text_for
from pipeline.tasks import TaskSpec
from pipeline.validate import Filtered, Valid, compile_validator, judge

JUDGED_STATUSES = frozenset({"ok", "invalid"})


@dataclass
class RejudgeReport:
    """How the stored verdicts of one task moved."""

    task: str
    judged: int = 0
    kept: int = 0  # platform verdicts, not judged again
    other_schema: int = 0  # asked under another schema: that schema's verdicts, left as they are
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)

    def describe(self, *, dry_run: bool) -> str:
        changed = sum(n for (old, new), n in self.moves.items() if old != new)
        moves = ", ".join(f"{old}→{new}: {n}" for (old, new), n in sorted(self.moves.items()))
        verb = "would change" if dry_run else "changed"
        other = (f"; left {self.other_schema} stored verdicts of another schema as they were (each keeps "
                 "the verdict of the schema it was asked under)" if self.other_schema else "")
        return (f"task {self.task}: judged {self.judged} stored answers again ({moves or 'none'}); "
                f"{verb} {changed} verdicts; {self.kept} platform verdicts kept as they were{other}")


@dataclass(frozen=True)
class _Judge:
    validator: jsonschema_rs.Validator
    answer_dtype: Any
    free_form: bool


def rejudge_journal(journal: Journal, task: TaskSpec, *, dry_run: bool = False) -> RejudgeReport:
    """Judge every stored ``ok``/``invalid`` answer of ``task`` asked under its current schema again;
    write back what changed."""
    judge_with = _Judge(compile_validator(task.schema), extraction_dtype(task.schema), has_free_form(task.schema))
    report = RejudgeReport(task.name)
    changed: list[JournalEntry] = []
    for entry in journal.entries(task.name):
        if entry.schema_id != task.schema_id:
            report.other_schema += 1
            continue
        if entry.status not in JUDGED_STATUSES:
            report.kept += 1
            continue
        new = rejudged(entry, judge_with)
        report.judged += 1
        report.moves[(entry.status, new.status)] += 1
        if _differs(entry, new):
            changed.append(new)
    if changed and not dry_run:
        journal.replace_verdicts(changed)
    return report


def rejudged(entry: JournalEntry, judge_with: _Judge) -> JournalEntry:
    """``entry`` with the verdict the current validator gives its stored answer (``entry`` was asked
    under ``judge_with``'s schema: its key, hence its ``schema_id``, stays)."""
    text = entry.answer if entry.answer is not None else entry.data_json
    verdict = judge(text, entry.finish_reason, judge_with.validator)
    if isinstance(verdict, Valid):
        data = json_text_for(verdict.data, judge_with.answer_dtype) if judge_with.free_form else verdict.data
        return replace(entry, status="ok", data_json=orjson.dumps(data).decode(), error_code=None,
                       error_message=None, answer=text)
    if isinstance(verdict, Filtered):
        return replace(entry, status="filtered", data_json=None, error_code=verdict.code,
                       error_message=verdict.message, answer=text)
    if is_reask_due(entry):  # still wrong: the re-ask a later run owes it stays due
        return entry
    message = f"{verdict.code} when judged again (no re-ask): {'; '.join(verdict.errors)[:500]}"
    return replace(entry, status="invalid", data_json=None, error_code=verdict.code, error_message=message,
                   answer=text)


def _differs(old: JournalEntry, new: JournalEntry) -> bool:
    if (old.status, old.schema_id) != (new.status, new.schema_id):
        return True
    if new.status == "ok":
        if old.data_json is None or new.data_json is None:
            return True
        return bool(orjson.loads(old.data_json) != orjson.loads(new.data_json))
    return old.error_code != new.error_code
