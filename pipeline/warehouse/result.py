"""What an export did, as a small value the CLI prints and the flow records."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.warehouse.keep import Kept
from pipeline.wording import plural


@dataclass(frozen=True)
class ExportResult:
    """The outcome of one successful export.

    ``inserted`` are identities new to the table, ``updated`` existing ones whose values changed,
    ``unchanged`` existing ones written again with equal values, ``kept_ok`` and ``kept_newer``
    existing ones left as stored by the keep rule (:mod:`keep`: a stored ok answer against an
    incoming row that is not ok; a stored row of a newer run); together they make ``rows``.
    Counts a target cannot tell (dlt destinations) are None. ``nul_rows`` counts the rows whose NUL
    characters were removed (PostgreSQL cannot store them); ``nul_examples`` names the first of them
    by record id, ``nul_columns`` the columns they were in. ``warnings`` are one-line notes (a summary
    beside the table that belongs to another run).
    """

    target: str
    table: str
    rows: int
    inserted: int | None
    updated: int | None
    unchanged: int | None
    table_rows: int | None
    runs_table: str
    run_ids: tuple[str, ...]
    added_columns: tuple[str, ...] = ()
    seconds: float = 0.0
    nul_rows: int = 0
    nul_examples: tuple[str, ...] = ()
    nul_columns: tuple[str, ...] = ()
    kept_ok: int = 0
    kept_newer: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def kept(self) -> Kept:
        return Kept(ok=self.kept_ok, newer=self.kept_newer)

    def describe(self) -> str:
        """One line for a terminal or a log."""
        counts = ", ".join(
            f"{value} {label}"
            for label, value in (("new", self.inserted), ("updated", self.updated), ("unchanged", self.unchanged),
                                 ("kept", self.kept.total or None))
            if value is not None
        )
        head = f"exported {plural(self.rows, 'row')} to {self.table} at {self.target}"
        head += f" ({counts})" if counts else ""
        tail = [f"table now {plural(self.table_rows, 'row')}"] if self.table_rows is not None else []
        tail += [f"added columns {', '.join(self.added_columns)}"] if self.added_columns else []
        tail += [self.kept.describe()] if self.kept.total else []
        tail += [self._describe_nul()] if self.nul_rows else []
        tail += [f"warning: {w}" for w in self.warnings]
        tail.append(f"runs {', '.join(self.run_ids) or '-'}; {self.seconds:.2f}s")
        return "; ".join([head, *tail])

    def _describe_nul(self) -> str:
        more = f" and {self.nul_rows - len(self.nul_examples)} more" if self.nul_rows > len(self.nul_examples) else ""
        return (
            f"removed NUL characters (PostgreSQL cannot store them) from {plural(self.nul_rows, 'row')}: "
            f"{', '.join(self.nul_examples)}{more} (columns {', '.join(self.nul_columns)})"
        )
