"""Log lines and the evaluation note of a flow run (pure, apart from reading the output's gold columns)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.errors import first_line
from pipeline.evaluate import GoldField, gold_problems, parse_gold_table, parse_path, render_markdown, score_table
from pipeline.io import ShardSpec
from pipeline.stats import RunStats
from pipeline.summary import RunSummary
from pipeline.tasks import TaskSpec
from pipeline.wording import plural


def shard_line(spec: ShardSpec, stats: RunStats, seconds: float, slots: int, limiter: str) -> str:
    """The one INFO line a shard task logs."""
    counts = " ".join(f"{status}={n}" for status, n in stats.status_table().items() if n)
    return (f"shard {spec.index}: rows {spec.offset}..{spec.offset + spec.rows - 1} of {Path(spec.file).name}: "
            f"{counts or 'no rows'}; {stats.requests_sent} requests ({stats.from_journal} from journal), "
            f"{stats.cost_cny:.4f} CNY, {seconds:.1f} s, {slots} slots ({limiter})")


def run_line(summary: RunSummary) -> str:
    """The one INFO line that sums up a run."""
    counts = " ".join(f"{status}={n}" for status, n in summary.status_counts.items())
    return (f"run {summary.run_id}: {plural(summary.rows, 'row')} ({counts}) in {summary.seconds} s, "
            f"{summary.cost_cny:.4f} CNY, endpoint {summary.endpoint}, limiter {summary.limiter}; "
            f"output {summary.output}")


def failure_message(exc: BaseException, done: int, total: int) -> str:
    """Why the run stopped, and that re-running it is free for what was answered."""
    return (f"shard failed ({type(exc).__name__}: {first_line(exc)}); {done} of {total} shards had finished. "
            "Every answer is in the journal: re-running the same run pays only for the rest.")


def scorable_gold(task: TaskSpec, columns: set[str]) -> list[GoldField]:
    """The task's gold fields whose gold column the table carries."""
    gold = parse_gold_table(task.gold) if task.gold else ()
    return [g for g in gold if parse_path(g.column)[0] in columns]


def evaluate_output(task: TaskSpec, output: Path) -> str | None:
    """Markdown scores of the output against its gold columns; None when the input had none."""
    schema = pl.read_parquet_schema(output)
    present = scorable_gold(task, set(schema))
    gold = [g for g in present if not gold_problems(schema, [g])]  # a gold column of the wrong kind: said, not scored
    if not present:
        return None
    needed = {"_status"} | {parse_path(g.column)[0] for g in gold} | {parse_path(g.field)[0] for g in gold}
    table = pl.scan_parquet(output).select(sorted(needed)).collect()
    skipped = gold_problems(schema, present)
    return render_markdown(score_table(table, gold)) + ("\nNot scored: " + "; ".join(skipped) + "\n" if skipped else "")
