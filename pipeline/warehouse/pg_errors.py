"""psycopg exceptions → :mod:`pipeline.warehouse.errors`, one line each, never a password.

The driver's text is scrubbed of the connection's known passwords before it goes into a message
(a server may quote a database or role name that happens to hold the password).
"""

from __future__ import annotations

import psycopg

from pipeline.errors import first_line
from pipeline.warehouse.errors import AccessDenied, ConnectionFailed, LoadFailed, TargetUnreachable
from pipeline.warehouse.pg_dsn import scrub

_UNREACHABLE = (
    "connection refused",
    "timeout expired",
    "failed to resolve host",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "server closed the connection",
    "is the server running",
)
_DENIED_HINTS = (
    ("password authentication failed", "check the password in the URL or PGPASSWORD"),
    ("no password supplied", "put the password in the URL or PGPASSWORD"),
    ("role", "check the user name in the URL"),
    ("database", "create the database (createdb) or fix the URL"),
    ("pg_hba.conf", "the server's pg_hba.conf does not admit this user from this host"),
    ("permission denied", "grant the role the rights it needs, or use another role"),
)


def connection_error(exc: psycopg.Error, where: str, known: tuple[str, ...] = ()) -> ConnectionFailed:
    """The error to raise when connecting to ``where`` (a redacted URL) failed with ``exc``;
    ``known`` are the secrets to scrub from the driver's text (and from ``where``)."""
    detail, where = scrub(_detail(exc), known), scrub(where, known)
    lowered = detail.lower()
    if any(marker in lowered for marker in _UNREACHABLE):
        return TargetUnreachable(
            f"cannot reach PostgreSQL at {where}: {detail} (is the server running and accepting TCP/IP "
            "connections on that host and port?)"
        )
    for marker, hint in _DENIED_HINTS:
        if marker in lowered:
            return AccessDenied(f"PostgreSQL at {where} refused the connection: {detail} ({hint})")
    return ConnectionFailed(f"cannot connect to PostgreSQL at {where}: {detail}")


def load_error(
    exc: psycopg.Error, where: str, table: str, key: tuple[str, ...], known: tuple[str, ...] = ()
) -> LoadFailed | AccessDenied:
    """The error to raise when loading ``table`` failed; the transaction is already rolled back."""
    detail, where = scrub(_detail(exc), known), scrub(where, known)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return AccessDenied(f"PostgreSQL at {where} denied the export into {table}: {detail}; nothing was written")
    if isinstance(exc, psycopg.errors.InvalidColumnReference):
        columns = ", ".join(key)
        quoted = ", ".join(f'"{k}"' for k in key)
        return LoadFailed(
            f"table {table} at {where} has no primary key on ({columns}), so rows cannot be merged; "
            f"add one with ALTER TABLE {table} ADD PRIMARY KEY ({quoted}); nothing was written"
        )
    return LoadFailed(f"export into {table} at {where} failed, nothing was written: {detail}")


def _detail(exc: BaseException) -> str:
    return first_line(exc).removeprefix("connection failed: ").replace("FATAL:  ", "")
