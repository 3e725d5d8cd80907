"""PostgreSQL connection strings: parsed by libpq's own parser, shown without their passwords (pure).

Two forms are accepted, the two libpq knows: a URL (``postgresql://user:pw@host:5432/db?sslmode=…``)
and key=value (``host=… dbname=… password='…'``). The URL may carry our own ``schema=`` (or
``dataset=``) parameter, which is taken out before libpq sees the string.

Passwords are found by parsing, never by splitting on ``:`` and ``@`` ourselves: a password may hold
``#`` or ``?`` (libpq reads both as part of it), or arrive as ``?password=`` in the query. A URL in
which libpq's reading would differ from the user's — an unencoded ``/`` or ``@`` in the password,
which libpq takes for the end of the host or of the user part — is refused, with the fix
(percent-encode them as ``%2F`` and ``%40``). What is shown of a connection string is rebuilt from
its parsed parts (``postgresql://etl:***@db:5432/analytics``); any text a driver returns has the
known passwords replaced by ``***`` (:func:`scrub`) before it is printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pipeline.warehouse.errors import TargetError

SCHEMA_KEYS = ("schema", "dataset")
MASK = "***"
_URL_SCHEMES = ("postgresql://", "postgres://")
# key=value strings are recognised by a first keyword of libpq's, so a DuckDB path such as
# ``dt=2026/w.duckdb`` is not taken for one.
_KEY_VALUE = re.compile(
    r"^\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|options|application_name"
    r"|connect_timeout|target_session_attrs)\s*="
)
_QUERY_SECRET = re.compile(r"(?i)\b([a-z_]*password)=[^&#\s]*")
_PAIR_SECRET = re.compile(r"""(?i)\b([a-z_]*password)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)""")
_QUOTED = re.compile(r'"[^"]*"')
_SHOWN_FIRST = ("user", "password", "host", "port", "dbname")


def is_postgres(text: str) -> bool:
    """Whether ``text`` is meant as a PostgreSQL connection string (URL or key=value form)."""
    return text.lower().startswith(_URL_SCHEMES) or ("://" not in text and bool(_KEY_VALUE.match(text)))


def parse_dsn(text: str) -> tuple[dict[str, str], str | None]:
    """libpq keywords of ``text`` (our schema parameter removed) and that schema; :class:`TargetError`
    when libpq cannot parse it or would read it differently from what was meant."""
    import psycopg  # here, not at import: every CLI command loads this package, few export to PostgreSQL
    from psycopg import conninfo

    cleaned, schema = _take_schema(text) if "://" in text else (text, None)
    try:
        params = {k: str(v) for k, v in conninfo.conninfo_to_dict(cleaned).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        detail = _QUOTED.sub('"…"', str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable")
        hint = " (choose the schema with the URL form: postgresql://…?schema=NAME)" if "schema" in str(exc) else ""
        raise TargetError(f"cannot read the PostgreSQL connection string {redact_dsn(text)}: {detail}{hint}") from None
    _check_unambiguous(params, text)
    return params, schema


def describe(params: Mapping[str, str]) -> str:
    """A URL for messages rebuilt from parsed keywords, any password shown as ``***`` (also where
    another part, say the database name, happens to contain it)."""
    user = params.get("user", "")
    secret = f":{MASK}" if params.get("password") else ""
    userinfo = f"{user}{secret}@" if user or secret else ""
    port = f":{params['port']}" if params.get("port") else ""
    extra = [f"{k}={MASK if _is_secret(k) else v}" for k, v in params.items() if k not in _SHOWN_FIRST]
    query = f"?{'&'.join(extra)}" if extra else ""
    shown = f"postgresql://{userinfo}{params.get('host', '')}{port}/{params.get('dbname', '')}{query}"
    return scrub(shown, secrets(params))


def secrets(params: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values among ``params`` (passwords), to scrub from driver messages."""
    return tuple(v for k, v in params.items() if _is_secret(k) and v)


def scrub(message: str, known: Iterable[str]) -> str:
    """``message`` with each known secret (longest first) replaced by ``***``."""
    for secret in sorted((s for s in known if s), key=len, reverse=True):
        message = message.replace(secret, MASK)
    return message


def redact_dsn(text: str) -> str:
    """``text`` with anything that may be a password replaced by ``***``, without parsing it.

    For messages about strings that may not parse: in a URL everything between ``user:`` and the
    last ``@`` is hidden (over-hiding is safe, under-hiding is not), and ``password=`` values are
    hidden in URL queries and key=value strings alike. Text without either comes back unchanged.
    """
    if "://" not in text:
        return _PAIR_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)
    scheme, _, rest = text.partition("://")
    rest = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", rest)
    userinfo, at, tail = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return f"{scheme}://{rest}"
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{MASK}@{tail}"


def _take_schema(url: str) -> tuple[str, str | None]:
    """Split our schema parameter off a URL's query, reading the URL the way libpq does.

    libpq ends the user part at the first ``@`` met before any ``/``, and the query starts at the
    first ``?`` after that.
    """
    scheme, _, rest = url.partition("://")
    stop = re.search(r"[@/]", rest)
    start = stop.end() if stop and stop.group() == "@" else 0
    head, mark, query = rest[start:].partition("?")
    if not mark:
        return url, None
    kept, schema = [], None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key in SCHEMA_KEYS:
            schema = value
        elif pair:
            kept.append(pair)
    rebuilt = f"{scheme}://{rest[:start]}{head}" + (f"?{'&'.join(kept)}" if kept else "")
    return rebuilt, schema


def _check_unambiguous(params: Mapping[str, str], text: str) -> None:
    """Refuse what libpq would read differently from the user: ``@`` outside the password, a port
    that is not a number (both the mark of an unencoded ``/`` or ``@`` in the password)."""
    misread = any("@" in params.get(k, "") for k in ("user", "host", "dbname"))
    port = params.get("port", "")
    if misread or (port and not all(p.strip().isdigit() for p in port.split(",") if p.strip())):
        raise TargetError(
            f"cannot read the PostgreSQL URL {redact_dsn(text)} unambiguously: percent-encode '/' as %2F "
            "and '@' as %40 in the user name and password (or pass the password in PGPASSWORD)"
        )


def _is_secret(key: str) -> bool:
    return "password" in key.lower()
