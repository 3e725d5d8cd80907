"""Compare a warehouse table's columns with the columns an export brings (pure).

Types are compared as the warehouse spells them (``STRUCT(a BIGINT)[]`` in DuckDB, ``jsonb`` in
PostgreSQL), exactly: a struct that gained a field is a different type and so a clash, never a
silent cast. New columns are added (``ALTER TABLE … ADD COLUMN``); columns the warehouse has and
the export lacks are left alone (they stay null on new rows). A column whose new type is unknown
(all nulls in the source) matches any existing type. A new column whose name differs from an
existing one only in case (``category`` against ``Category``) is a clash too: DuckDB would take
them for one column and PostgreSQL for two, and neither is what the user meant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.warehouse.errors import SchemaClash


@dataclass(frozen=True)
class Clash:
    """One column whose existing type differs from the new one."""

    column: str
    old_type: str
    new_type: str


@dataclass(frozen=True)
class ColumnPlan:
    """What a merge must do to the table's columns before it can load."""

    create: bool
    added: tuple[tuple[str, str], ...]
    clashes: tuple[Clash, ...]
    renamed: tuple[tuple[str, str], ...] = ()  # (existing name, new name) differing only in case


def plan_columns(
    existing: Mapping[str, str] | None, new: Mapping[str, str], *, untyped: frozenset[str] = frozenset()
) -> ColumnPlan:
    """The plan for merging columns ``new`` (name → type) into a table with ``existing`` (None: absent)."""
    if existing is None:
        return ColumnPlan(create=True, added=(), clashes=())
    folded = {name.casefold(): name for name in existing}
    renamed = tuple(
        (folded[name.casefold()], name) for name in new if name not in existing and name.casefold() in folded
    )
    added = tuple((name, kind) for name, kind in new.items() if name not in existing)
    clashes = tuple(
        Clash(name, existing[name], kind)
        for name, kind in new.items()
        if name in existing and name not in untyped and existing[name] != kind
    )
    return ColumnPlan(create=False, added=added, clashes=clashes, renamed=renamed)


def raise_on_clash(
    plan: ColumnPlan,
    *,
    table: str,
    alter: Callable[[Clash], str],
    rename: Callable[[str, str], str],
    blocked: Callable[[Clash], str | None] | None = None,
) -> None:
    """Raise :class:`SchemaClash` for the first clash, saying how to migrate; else return.

    ``alter`` spells the warehouse's own statement that changes a clashing column's type, ``rename``
    the one that renames a column (old name, new name). ``blocked``, when given, says why that
    statement cannot succeed on the stored values (``4 stored values (e.g. 't-0') do not convert to
    BIGINT``), or None; a blocked ALTER is not offered (the clash's ``migration`` is then empty).
    """
    if plan.renamed:
        _raise_on_case(plan.renamed, table=table, rename=rename)
    if not plan.clashes:
        return
    first = plan.clashes[0]
    more = f" (and {len(plan.clashes) - 1} more column(s))" if len(plan.clashes) > 1 else ""
    why_not = blocked(first) if blocked else None
    migration = "" if why_not else alter(first)
    advice = (
        f"No ALTER can migrate it: {why_not}. Export into a new table with --table {table}_v2, or give the "
        f"column its warehouse type ({first.old_type}) again upstream"
        if why_not
        else f"Migrate with `{migration}` (add a USING clause if needed), or export into a new table with "
        f"--table {table}_v2"
    )
    raise SchemaClash(
        f"column {first.column!r} of table {table!r} is {first.old_type} in the warehouse but "
        f"{first.new_type} in the new table{more}; nothing was written. {advice}",
        table=table,
        column=first.column,
        old_type=first.old_type,
        new_type=first.new_type,
        migration=migration,
    )


def _raise_on_case(renamed: tuple[tuple[str, str], ...], *, table: str, rename: Callable[[str, str], str]) -> None:
    old, new = renamed[0]
    more = f" (and {len(renamed) - 1} more column(s))" if len(renamed) > 1 else ""
    migration = rename(old, new)
    raise SchemaClash(
        f"column {new!r} of the new table differs only in case from column {old!r} of table {table!r}"
        f"{more}; nothing was written. Rename the warehouse column with `{migration}`, rename the "
        f"column upstream, or export into a new table with --table {table.rsplit('.', 1)[-1]}_v2",
        table=table,
        column=new,
        old_type=old,
        new_type=new,
        migration=migration,
    )
