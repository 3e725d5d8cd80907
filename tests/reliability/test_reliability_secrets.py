"""Secrets: a sentinel API key never shows up in output, logs, journal, tables, artifacts or errors.

The emulator requires ``Authorization: Bearer <sentinel>``, so a successful run proves the key was
really sent; then every byte the run left behind is searched for it. A wrong key must stop the run
with advice, and without echoing either key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import sys
import threading
import traceback
import uuid
import zlib
from contextlib import closing, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emulator.config import EmulatorConfig, LatencySpec
from emulator.process import start_emulator
from flows.artifacts import error_rows, outputs_markdown, summary_rows
from pipeline.endpoints import online_target
from pipeline.errors import RunAborted
from pipeline.runner import RunRequest, run_extraction
from pipeline.settings import Settings
from pipeline.summary import RunSummary
from tests.fakes import FakeGLM, completion, glm_error
from tests.reliability.support import (
    SCHEMAS,
    cli_env,
    journal_count,
    one_error_line,
    run_argv,
    run_cli,
    summary_of,
    write_tickets,
)

SENTINEL = f"sk-sentinel-{uuid.uuid4().hex}.SeCrEt"
WRONG = f"sk-wrong-{uuid.uuid4().hex}.SeCrEt"
CAP = 6
FAULTS = {"500": 0.05, "reset": 0.03, "malformed": 0.05, "sensitive_input": 0.05, "1302": 0.05}


def files_holding(folder: Path, *needles: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain a needle (as UTF-8 or UTF-16), a SQLite file's
    compressed values included (the journal stores answers deflated, where a byte scan is blind)."""
    encoded = [n.encode(enc) for n in needles for enc in ("utf-8", "utf-16-le")]

    def holds(path: Path) -> bool:
        return any(e in blob for blob in (path.read_bytes(), *_inflated_values(path)) for e in encoded)

    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and holds(p))


def _inflated_values(path: Path) -> list[bytes]:
    """The raw-deflate BLOB values of every table of a SQLite file, inflated (none for other files)."""
    if not path.read_bytes().startswith(b"SQLite format 3"):
        return []
    found: list[bytes] = []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        with suppress(zlib.error):
                            found.append(zlib.decompress(value, wbits=-15))
    return found


@pytest.mark.slow
def test_sentinel_key_is_sent_but_never_stored_printed_or_rendered(tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "in.parquet", 120)
    output = tmp_path / "out.parquet"
    config = EmulatorConfig(concurrency=CAP, latency=LatencySpec.parse("fixed:0.002"), seed=8, faults=FAULTS,
                            api_key=SENTINEL)
    with start_emulator(config) as emu:
        env = cli_env(tmp_path / "journal.sqlite", ZHIPUAI_API_KEY=SENTINEL)
        argv = [a for a in run_argv(source, output, emu.base_url, CAP) if a != "-q"]  # the full console output
        done = run_cli(argv, env)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr
    assert stats["by_outcome"].get("unauthorized", 0) == 0 and stats["completed_ok"] > 0  # the key was used
    summary = summary_of(output)
    assert summary["errors"], "the run should have row errors whose messages are stored"
    assert SENTINEL not in done.stdout + done.stderr
    assert files_holding(tmp_path, SENTINEL) == []  # table, summary, journal (+ WAL), anything else
    typed = RunSummary.from_dict(summary)
    rendered = [summary_rows(typed), error_rows(typed), outputs_markdown(typed, evaluation=None, export=None)]
    assert SENTINEL not in repr(rendered)


@pytest.mark.slow
def test_wrong_key_stops_with_advice_and_echoes_no_key(tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "in.parquet", 60)
    output = tmp_path / "out.parquet"
    config = EmulatorConfig(concurrency=CAP, latency=LatencySpec.parse("fixed:0.002"), seed=8, api_key=SENTINEL)
    with start_emulator(config) as emu:
        done = run_cli([*run_argv(source, output, emu.base_url, CAP)],
                       cli_env(tmp_path / "journal.sqlite", ZHIPUAI_API_KEY=WRONG))
        received = emu.stats()["requests_received"]
    assert done.returncode == 3, done.stderr
    line = one_error_line(done.stderr)
    assert "1002" in line and "check ZHIPUAI_API_KEY" in line, line
    assert received <= CAP + 1
    assert SENTINEL not in done.stdout + done.stderr and WRONG not in done.stdout + done.stderr
    assert files_holding(tmp_path, SENTINEL, WRONG) == []
    assert not output.exists() and journal_count(tmp_path / "journal.sqlite") == 0


def test_settings_targets_errors_and_logs_never_show_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ZHIPUAI_API_KEY", SENTINEL)
    settings = Settings(base_url="http://glm.test/api/paas/v4", schemas_dir=SCHEMAS,
                        journal_path=tmp_path / "journal.sqlite", concurrency=2, max_attempts=3,
                        backoff_initial_s=0.001, backoff_max_s=0.002)
    target = online_target(settings)
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump()),
                 repr(target), str(target)):
        assert SENTINEL not in text
    write_tickets(tmp_path / "in.parquet", 6)

    def refuse_after_two(body: dict[str, object]) -> object:
        return glm_error(401, "1002", f"bad token for {len(fake.requests)}")

    fake = FakeGLM(script=[glm_error(500, "500"), completion('{"x": 1}'), completion("not json")],
                   default=refuse_after_two)
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        async with fake.transport() as transport:
            await run_extraction(RunRequest("ticket_qa", str(tmp_path / "in.parquet"), tmp_path / "out.parquet"),
                                 settings, target, transport=transport)

    with pytest.raises(RunAborted) as raised:
        asyncio.run(go())
    assert all(h["authorization"] == f"Bearer {SENTINEL}" for h in fake.headers)  # really sent
    shown = "".join(traceback.format_exception(raised.value)) + repr(raised.value)
    assert "check ZHIPUAI_API_KEY" in str(raised.value)
    assert SENTINEL not in shown and SENTINEL not in caplog.text
    assert files_holding(tmp_path, SENTINEL) == []


class EchoingGateway:
    """A gateway that puts the request's Authorization header into its error bodies: a JSON 1261
    (a final row error, kept in the journal) for even documents, a plain-text 404 for odd ones, or
    a JSON 401/1002 (fatal) for every request when ``fatal``."""

    def __init__(self, *, fatal: bool = False) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                gateway.seen.append(self.headers.get("Authorization", ""))
                auth = self.headers.get("Authorization")
                if gateway.fatal:
                    status, reply = 401, {"error": {"code": "1002", "message": f"token rejected: {auth}"}}
                elif len(body["messages"][-1]["content"]) % 2 == 0:
                    status, reply = 400, {"error": {"code": "1261", "message": f"too long, headers: {auth}"}}
                else:
                    status, reply = 404, f"no route for POST {self.path} with Authorization: {auth}"
                data = json.dumps(reply).encode() if isinstance(reply, dict) else reply.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.fatal = fatal
        self.seen: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> EchoingGateway:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


URL_SECRET = f"pw-{uuid.uuid4().hex}"


@pytest.mark.parametrize("where", ["env key", "url credentials"])
def test_a_key_echoed_by_a_gateway_is_never_stored_or_printed(tmp_path: Path, where: str) -> None:
    source = write_tickets(tmp_path / "in.parquet", 40)
    output, journal = tmp_path / "out.parquet", tmp_path / "journal.sqlite"
    with EchoingGateway() as gateway:
        if where == "env key":
            base_url, env = f"http://127.0.0.1:{gateway.port}/api/paas/v4", cli_env(journal, ZHIPUAI_API_KEY=SENTINEL)
            secrets: tuple[str, ...] = (SENTINEL,)
        else:
            base_url, env = f"http://robot:{URL_SECRET}@127.0.0.1:{gateway.port}/api/paas/v4", cli_env(journal)
            secrets = (URL_SECRET, base64.b64encode(f"robot:{URL_SECRET}".encode()).decode())
        argv = [a for a in run_argv(source, output, base_url, CAP) if a != "-q"]
        done = run_cli(argv, env)
    assert any(secrets[-1] in seen for seen in gateway.seen)  # the gateway did get (and echo) the secret
    assert done.returncode == 4, done.stderr  # every row failed: the run says so after writing the output
    summary = summary_of(output)
    assert {e["code"] for e in summary["errors"]} == {"1261", "404"}
    assert journal_count(journal) > 0  # the 1261 messages are journaled
    assert summary["base_url"] == f"http://127.0.0.1:{gateway.port}/api/paas/v4"
    assert not any(s in done.stdout + done.stderr for s in secrets)
    assert files_holding(tmp_path, *secrets) == []


def test_a_fatal_answer_echoing_the_key_stops_the_run_without_showing_it(tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "in.parquet", 20)
    output = tmp_path / "out.parquet"
    with EchoingGateway(fatal=True) as gateway:
        base_url = f"http://127.0.0.1:{gateway.port}/api/paas/v4"
        done = run_cli(run_argv(source, output, base_url, CAP),
                       cli_env(tmp_path / "journal.sqlite", ZHIPUAI_API_KEY=SENTINEL))
    assert done.returncode == 3, done.stderr
    line = one_error_line(done.stderr)
    assert "1002" in line and "token rejected: Bearer ***" in line, line
    assert SENTINEL not in done.stdout + done.stderr and files_holding(tmp_path, SENTINEL) == []


def test_a_key_and_url_credentials_together_are_refused_in_one_line(tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "in.parquet", 4)
    output = tmp_path / "out.parquet"
    with EchoingGateway() as gateway:
        base_url = f"http://robot:{URL_SECRET}@127.0.0.1:{gateway.port}/api/paas/v4"
        done = run_cli(run_argv(source, output, base_url, CAP),
                       cli_env(tmp_path / "journal.sqlite", ZHIPUAI_API_KEY=SENTINEL))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert "base_url" in line and "credentials" in line, line
    assert gateway.seen == [] and not output.exists()
    assert SENTINEL not in done.stdout + done.stderr and URL_SECRET not in done.stdout + done.stderr


def test_a_base_url_without_a_scheme_is_refused_without_showing_its_password(tmp_path: Path) -> None:
    """``user:pw@host`` without ``http://`` was taken as a URL with no host: the run went ahead,
    retried every row as a network fault and wrote the password into summary.json and the table."""
    source = write_tickets(tmp_path / "in.parquet", 4)
    output = tmp_path / "out.parquet"
    done = run_cli(run_argv(source, output, f"robot:{URL_SECRET}@127.0.0.1:9/api/paas/v4", CAP),
                   cli_env(tmp_path / "journal.sqlite"))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert "base_url" in line and "http://" in line, line
    assert URL_SECRET not in done.stdout + done.stderr and not output.exists()
    assert files_holding(tmp_path, URL_SECRET) == []


@pytest.mark.parametrize("tail", [f"?api_key={URL_SECRET}", f"#{URL_SECRET}", f"/?key={URL_SECRET}#frag", "?"],
                         ids=["query", "fragment", "both", "bare-question-mark"])
def test_a_base_url_with_a_query_or_fragment_is_refused_without_showing_it(tmp_path: Path, tail: str) -> None:
    """A ``?query`` swallowed ``/chat/completions`` (the run posted to the bare base URL and stopped on
    "the platform refused the request"); a ``#fragment`` was dropped from the requests but printed in
    the run table and written to summary.json, a key put there with it."""
    source = write_tickets(tmp_path / "in.parquet", 4)
    output = tmp_path / "out.parquet"
    with EchoingGateway() as gateway:
        base_url = f"http://127.0.0.1:{gateway.port}/api/paas/v4{tail}"
        done = run_cli(run_argv(source, output, base_url, CAP), cli_env(tmp_path / "journal.sqlite"))
        estimated = run_cli([sys.executable, "-m", "pipeline.cli", "estimate", "--task", "ticket_qa",
                             "--input", str(source), "--base-url", base_url], cli_env(tmp_path / "journal.sqlite"))
    for refused in (done, estimated):
        assert refused.returncode == 2, refused.stderr
        line = one_error_line(refused.stderr)
        assert "base_url" in line and "query" in line and "fragment" in line, line
        assert URL_SECRET not in refused.stdout + refused.stderr
    assert gateway.seen == [] and not output.exists()
    assert files_holding(tmp_path, URL_SECRET) == []
