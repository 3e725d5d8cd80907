"""Why an export failed, as one line a user can act on.

Every error of the warehouse package derives from :class:`WarehouseError`, itself a branch of the
package-wide :class:`pipeline.errors.GlmExtractError` (so the CLI exits 2); ``str(exc)`` is a single
line that never contains a password. ``transient`` says whether retrying the same export later can
succeed without anyone changing anything::

    WarehouseError                  base; transient = False
    ├── TargetError                 the --to value cannot be parsed, or names an unknown target
    ├── SourceError                 the file is missing, not Parquet, or not an enriched table
    ├── ConnectionFailed            the warehouse cannot be opened (see the two below)
    │   ├── TargetUnreachable       host down, port closed, file locked by another process; transient
    │   └── AccessDenied            bad credentials or role, missing database, unreadable file
    ├── SchemaClash                 an existing column's type differs from the new one; says how to migrate
    └── LoadFailed                  the load itself failed; the transaction was rolled back

Foreign exceptions (duckdb, psycopg, dlt) are translated at one boundary per target module and
chained with ``raise … from exc`` so the cause stays in the traceback for whoever debugs it.
"""

from __future__ import annotations

from pipeline.errors import GlmExtractError


class WarehouseError(GlmExtractError):
    """Base of every export failure; the message is one line."""

    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class TargetError(WarehouseError):
    """The target string names nothing we can export to."""


class SourceError(WarehouseError):
    """The enriched table cannot be read or is not an enriched table."""


class ConnectionFailed(WarehouseError):
    """The warehouse cannot be opened."""


class TargetUnreachable(ConnectionFailed):
    """Nobody answers (or the file is locked): the same export may succeed later."""

    transient = True


class AccessDenied(ConnectionFailed):
    """The warehouse answers but refuses us: credentials, role, database or file."""


class SchemaClash(WarehouseError):
    """An existing column's type differs from the new table's; nothing was written."""

    def __init__(self, message: str, *, table: str, column: str, old_type: str, new_type: str, migration: str) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.old_type = old_type
        self.new_type = new_type
        self.migration = migration


class LoadFailed(WarehouseError):
    """The load failed midway; the transaction was rolled back."""
