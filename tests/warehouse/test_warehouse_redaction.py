"""PostgreSQL passwords never reach a message: parsed with libpq's own parser, scrubbed from driver text.

As a user types them: passwords holding ``#``, ``/``, ``?`` or ``@``, ``?password=`` in the query, the
key=value form; on failure (nobody listening, a database named like the password) and on success.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.errors import GlmExtractError
from pipeline.warehouse import PostgresTarget, TargetError, parse_target, redact_dsn

MakeTable = Callable[..., Path]
SECRET = "SECRET"

# (what the user types, with {port}) — each holds SECRET in its password
URLS = [
    "postgresql://postgres:Wrong#Pw-SECRET@127.0.0.1:{port}/db",
    "postgresql://postgres:Wrong/Pw-SECRET@127.0.0.1:{port}/db",
    "postgresql://postgres:Wrong?Pw-SECRET@127.0.0.1:{port}/db",
    "postgresql://postgres:Wrong@Pw-SECRET@127.0.0.1:{port}/db",
    "postgresql://postgres:Wrong%40Pw-SECRET@127.0.0.1:{port}/db",
    "postgresql://postgres@127.0.0.1:{port}/db?password=SECRET",
    "postgresql://postgres@127.0.0.1:{port}/db?sslmode=disable&password=SECRET&schema=wh",
    "postgres://postgres:SECRET@127.0.0.1:{port}/db?schema=wh",
    "host=127.0.0.1 port={port} dbname=db user=postgres password=SECRET",
    "host=127.0.0.1 port={port} dbname=db password='Wr ong#SECRET'",
]


@pytest.mark.parametrize("url", URLS)
def test_refused_connection_never_prints_the_password(
    app: typer.Typer, make_table: MakeTable, free_port: int, url: str
) -> None:
    result = CliRunner().invoke(app, ["export", "--output", str(make_table()), "--to", url.format(port=free_port)])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert SECRET not in result.stderr
    assert "Pw-" not in result.stderr  # not even part of the password


@pytest.mark.parametrize("url", URLS)
def test_redact_dsn_hides_every_form(url: str) -> None:
    shown = redact_dsn(url.format(port=5432))
    assert SECRET not in shown and "Pw-" not in shown
    assert "127.0.0.1" in shown  # the host stays readable


@pytest.mark.parametrize("url", URLS)
def test_parsed_targets_do_not_show_the_password_in_describe_or_repr(url: str) -> None:
    try:
        target = parse_target(url.format(port=5432))
    except TargetError as exc:  # an ambiguous URL is refused, and the refusal is redacted too
        assert SECRET not in str(exc) and "Pw-" not in str(exc)
        return
    assert isinstance(target, PostgresTarget)
    assert SECRET not in target.describe() and SECRET not in repr(target)
    assert "127.0.0.1:5432" in target.describe()


def test_unencoded_slash_or_at_in_the_password_is_refused_naming_the_fix() -> None:
    for url in URLS[1], URLS[3]:
        with pytest.raises(TargetError, match="percent-encode") as info:
            parse_target(url.format(port=5432))
        assert SECRET not in str(info.value)


def test_encoded_and_hash_passwords_reach_libpq_intact() -> None:
    hashed = parse_target("postgresql://postgres:Wrong#Pw-SECRET@127.0.0.1:5432/db")
    encoded = parse_target("postgresql://postgres:Wrong%40Pw-SECRET@127.0.0.1:5432/db?schema=wh&sslmode=require")
    assert isinstance(hashed, PostgresTarget) and isinstance(encoded, PostgresTarget)
    assert hashed.params["password"] == "Wrong#Pw-SECRET" and hashed.params["dbname"] == "db"
    assert encoded.params["password"] == "Wrong@Pw-SECRET" and encoded.params["sslmode"] == "require"
    assert encoded.schema == "wh" and "schema" not in encoded.params


def test_an_unknown_target_with_a_password_is_refused_redacted() -> None:
    with pytest.raises(TargetError) as info:
        parse_target("mysql://u:Pw-SECRET@h/db")
    assert SECRET not in str(info.value)


@pytest.mark.postgres
def test_driver_messages_are_scrubbed_of_the_known_password(
    app: typer.Typer, make_table: MakeTable, pg_url: str
) -> None:
    """The server names the database; here the database is named like the password."""
    host = pg_url.rsplit("@", 1)[-1].rsplit("/", 1)[0].removeprefix("postgresql://")
    url = f"postgresql://postgres:nosuchdb_{SECRET}@{host}/nosuchdb_{SECRET}"
    result = CliRunner().invoke(app, ["export", "--output", str(make_table()), "--to", url])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.stderr and SECRET not in result.stderr


@pytest.mark.postgres
def test_success_message_does_not_print_a_query_password(
    app: typer.Typer, make_table: MakeTable, pg_url: str, pg_schema: str
) -> None:
    """Trust authentication ignores the password, so the export succeeds: the line must still hide it."""
    url = f"{pg_url}?password=Pw-{SECRET}&schema={pg_schema}"
    result = CliRunner().invoke(app, ["export", "--output", str(make_table()), "--to", url])
    assert result.exit_code == 0, result.output
    assert "exported 4 rows" in result.stdout and SECRET not in result.stdout and "Pw-" not in result.stdout


@pytest.mark.postgres
def test_the_password_from_pgpassword_is_scrubbed_and_no_raw_driver_text_is_chained(
    make_table: MakeTable, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's export runs with PGPASSWORD; a failure's traceback (Prefect prints it) shows the
    exception chain, so the driver's own text must not ride along as its cause."""
    from pipeline.warehouse import export_table

    secret = f"nosuchdb_{SECRET}_env"
    monkeypatch.setenv("PGPASSWORD", secret)
    host = pg_url.rsplit("@", 1)[-1].rsplit("/", 1)[0].removeprefix("postgresql://")
    with pytest.raises(GlmExtractError) as caught:
        export_table(make_table(), f"postgresql://postgres@{host}/{secret}")
    chain: list[BaseException] = []
    exc: BaseException | None = caught.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # what a traceback shows
    assert "does not exist" in str(caught.value)
    assert not [str(e) for e in chain if secret in str(e)]
