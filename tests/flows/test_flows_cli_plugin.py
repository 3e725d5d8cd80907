"""The library never imports the application: Prefect commands reach ``glm-extract`` by entry point."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.commands.plugins import GROUP, register_installed

REPO = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_no_module_of_the_library_imports_flows() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "flows")
        for path in sorted((REPO / "pipeline").rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_installed_command_has_the_prefect_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "prefect-setup" in done.stdout and "serve" in done.stdout and "export" in done.stdout


def test_a_broken_plugin_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    found = [
        EntryPoint("broken", "no_such_module_for_glm_extract:register", GROUP),
        EntryPoint("prefect", "flows.commands:register", GROUP),
    ]
    with caplog.at_level(logging.WARNING):
        assert register_installed(app, found) == ["prefect"]
    assert "broken" in caplog.text and "no_such_module_for_glm_extract" in caplog.text
    assert "prefect-setup" in CliRunner().invoke(app, ["--help"]).output
