"""The run form as the Prefect UI shows it, and ``prefect-setup`` refusing what it must not store.

The UI renders parameter and deployment descriptions as Markdown, which passes HTML through: a
``<model>`` in a description is taken for a tag and vanishes (the form read "glm:." and "dlt:.").
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.commands import register
from flows.deployments import build_deployments
from flows.extract import extract_documents
from flows.params import ExtractParams, default_schemas_dir
from flows.secrets import save_secret_key
from pipeline.errors import GlmExtractError

_CODE_SPAN = re.compile(r"`[^`]*`")
BASE = {"task": "ticket_qa", "input": "in.parquet", "output": "out/x.parquet"}


def _texts(node: Any) -> list[str]:
    """Every title and description anywhere in a JSON Schema."""
    found: list[str] = []
    if isinstance(node, dict):
        found += [v for k, v in node.items() if k in ("title", "description") and isinstance(v, str)]
        for value in node.values():
            found += _texts(value)
    elif isinstance(node, list):
        for value in node:
            found += _texts(value)
    return found


def _outside_code(text: str) -> str:
    return _CODE_SPAN.sub("", text)


def test_form_texts_hold_no_angle_brackets_outside_code_spans() -> None:
    schema = parameter_schema(extract_documents).model_dump()
    texts = _texts(schema)
    assert texts, "the form has titles and descriptions"
    for text in texts:
        assert not re.search(r"[<>]", _outside_code(text)), f"would be eaten as HTML in the UI: {text!r}"


def test_the_limit_and_destination_placeholders_survive_as_code() -> None:
    fields = ExtractParams.model_json_schema()["properties"]
    assert re.search(r"`glm:[A-Z_]+`", fields["model"]["description"])
    assert re.search(r"`glm:[A-Z_]+`", fields["concurrency"]["description"])
    assert re.search(r"`dlt:[A-Z_]+`", fields["export_to"]["description"])


def test_deployment_descriptions_hold_no_angle_brackets_outside_code_spans() -> None:
    for deployment in build_deployments():
        assert not re.search(r"[<>]", _outside_code(deployment.description or "")), deployment.description


@pytest.mark.parametrize(
    "target",
    [
        "postgresql://etl:pw@db:5432/wh",
        "postgresql://etl@db:5432/wh?password=pw",
        "postgresql://etl@db:5432/wh?sslmode=require&PASSWORD=pw",
        "host=db dbname=wh password=pw",
        "postgresql://etl:p/w@db:5432/wh",
        "host=db dbname=wh\npassword=pw",  # a newline: the pattern's lookahead does not cross it
        "postgresql://etl@db:5432/wh?pass%77ord=pw",  # percent-encoded key: libpq still reads a password
    ],
)
def test_the_form_refuses_a_password_in_the_export_target(target: str) -> None:
    """Parameters are stored and shown in the UI: a password there would be kept in the clear."""
    with pytest.raises(ValidationError) as caught:
        ExtractParams.model_validate({**BASE, "export_to": target})
    assert "pw" not in str(caught.value).replace("PGPASSWORD", "")


@pytest.mark.parametrize("target", ["postgresql://etl@db:5432/wh?schema=glm", "host=db dbname=wh", "w.duckdb"])
def test_the_form_accepts_password_free_targets(target: str) -> None:
    assert ExtractParams.model_validate({**BASE, "export_to": target}).export_to == target


@pytest.mark.parametrize("key", ["", "   "])
def test_save_key_refuses_an_empty_key_before_contacting_anything(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIPUAI_API_KEY", key)
    monkeypatch.delenv("GLM_EXTRACT_API_KEY", raising=False)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    # a server address where nothing listens: an attempt to store the key would fail differently
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        done = CliRunner().invoke(app, ["prefect-setup", "--save-key"])
    assert done.exit_code == 2, done.output
    assert "empty" in done.output and "ZHIPUAI_API_KEY" in done.output
    assert done.output.count("\n") == 1 and "Secret block" not in done.output and "✓" not in done.output


def test_the_secret_helper_itself_refuses_an_empty_key() -> None:
    """Belt and braces: whoever calls it, an empty key never becomes a stored Secret block."""
    with pytest.raises(GlmExtractError, match="empty API key"):
        asyncio.run(save_secret_key("glm-api-key", "  "))


def test_setup_against_a_server_that_does_not_answer_is_one_line() -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        done = CliRunner().invoke(app, ["prefect-setup", "--limit", "3"])
    assert done.exit_code == 2, done.output
    assert "http://127.0.0.1:9/api" in done.output and "prefect server start" in done.output
    assert " ".join(done.output.split()).count("error:") == 1 and "Traceback" not in done.output


def test_the_flow_reads_tasks_from_the_same_setting_as_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLM_EXTRACT_SCHEMAS_DIR", raising=False)
    monkeypatch.setenv("GLM_EXTRACT_SCHEMAS", str(tmp_path))
    assert default_schemas_dir() == tmp_path
