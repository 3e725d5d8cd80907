"""Column plans: create, add, clash — and the clash message says how to migrate."""

from __future__ import annotations

import pytest

from pipeline.warehouse import SchemaClash
from pipeline.warehouse.schema_diff import Clash, plan_columns, raise_on_clash

NEW = {"_task": "text", "_record_id": "text", "entities": "jsonb", "priority": "bigint"}


def test_missing_table_is_created() -> None:
    plan = plan_columns(None, NEW)
    assert plan.create and plan.added == () and plan.clashes == ()


def test_new_columns_are_added_and_old_ones_left_alone() -> None:
    existing = {"_task": "text", "_record_id": "text", "legacy": "text", "priority": "bigint"}
    plan = plan_columns(existing, NEW)
    assert not plan.create and plan.added == (("entities", "jsonb"),) and plan.clashes == ()


def test_changed_type_is_a_clash_unless_the_new_column_is_untyped() -> None:
    existing = {**NEW, "priority": "double precision"}
    assert plan_columns(existing, NEW).clashes == (Clash("priority", "double precision", "bigint"),)
    assert plan_columns(existing, NEW, untyped=frozenset({"priority"})).clashes == ()


def test_clash_message_names_column_types_and_migration() -> None:
    plan = plan_columns({**NEW, "priority": "text", "entities": "text"}, NEW)
    with pytest.raises(SchemaClash) as info:
        raise_on_clash(
            plan, table="ticket_qa", alter=lambda c: f"ALTER COLUMN {c.column} TYPE {c.new_type}", rename=max
        )
    error = info.value
    assert (error.column, error.old_type, error.new_type) == ("entities", "text", "jsonb")
    assert "and 1 more column(s)" in str(error)
    assert "ALTER COLUMN entities TYPE jsonb" in str(error) and "--table ticket_qa_v2" in str(error)


def test_no_clash_raises_nothing() -> None:
    raise_on_clash(plan_columns(NEW, NEW), table="t", alter=str, rename=max)
