"""The docs cannot drift from the code: every command option, row status and error code of our own
that the README and docs/ name exists in the code, and everything the code has is named in the docs."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from emulator.cli import build_parser
from pipeline.cli import _register_plugins, app
from pipeline.journal import REASK_DUE_CODES
from pipeline.outcomes import STATUSES
from tests.conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
README = REPO / "README.md"
CLI_DOC = REPO / "docs" / "cli.md"
CONTRACTS = REPO / "docs" / "contracts.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# options of other programs that appear in our docs' shell snippets (make, prefect, pytest, uv …)
FOREIGN = frozenset({"--help", "--all", "--pool", "--extra", "--python", "--quiet", "--no-deps", "-e"})


def cli_options() -> dict[str, set[str]]:
    """Command path (e.g. ``journal prune``) → the long options the installed CLI accepts."""
    _register_plugins()
    root = typer.main.get_command(app)
    found: dict[str, set[str]] = {}

    def walk(prefix: str, command: Any) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(f"{prefix} {name}".strip(), sub)
            return
        found[prefix] = {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))
                         if o.startswith("--") and o != "--help"}

    walk("", root)
    found["emulator"] = {o for a in build_parser()._actions for o in a.option_strings
                         if o.startswith("--") and o != "--help"}
    return found


def doc_sections() -> dict[str, str]:
    """docs/cli.md: command path → the text of its section."""
    parts = re.split(r"^## `glm-extract ([a-z -]+)`\s*$", CLI_DOC.read_text(encoding="utf-8"), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def code_snippets(text: str) -> Iterator[str]:
    """The lines of fenced code blocks (joined over trailing backslashes) and every inline code span."""
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S):
        yield from re.sub(r"\\\n\s*", " ", block).splitlines()
    yield from re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))


def command_lines(text: str) -> Iterator[tuple[str, str]]:
    """Each code snippet that calls glm-extract, as (command path, the snippet from the command on)."""
    for snippet in code_snippets(text):
        match = re.search(r"(?:^|\s|bin/)glm-extract ([a-z][a-z-]*)(?: ([a-z]+)\b)?", snippet)
        if match:
            yield (" ".join(g for g in match.groups() if g)), snippet[match.start():]


def test_every_option_of_every_command_is_in_the_cli_reference() -> None:
    sections = doc_sections()
    missing = {cmd: sorted(opts - set(OPTION.findall(sections.get(cmd, ""))))
               for cmd, opts in cli_options().items()}
    missing = {cmd: opts for cmd, opts in missing.items() if opts}
    assert not missing, f"options missing from docs/cli.md: {missing}"


def test_the_cli_reference_names_no_option_or_command_the_code_lacks() -> None:
    options = cli_options()
    sections = doc_sections()
    assert sorted(sections) == sorted(options), "docs/cli.md sections differ from the installed commands"
    stale = {cmd: sorted(set(re.findall(r"`(--[a-z0-9-]+)`", text)) - options[cmd]) for cmd, text in sections.items()}
    stale = {cmd: opts for cmd, opts in stale.items() if opts}
    assert not stale, f"docs/cli.md names options the code does not have: {stale}"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_glm_extract_commands_in_the_docs_use_real_options(doc: Path) -> None:
    options = cli_options()
    wrong: list[str] = []
    for command, line in command_lines(doc.read_text(encoding="utf-8")):
        key = command if command in options else command.split()[0]
        if key not in options:
            wrong.append(f"unknown command `glm-extract {command}`")
            continue
        wrong += [f"`glm-extract {key} {o}`" for o in OPTION.findall(line)
                  if o not in options[key] and o not in FOREIGN]
    assert not wrong, f"{doc.name}: {wrong}"


def test_the_statuses_in_the_contract_are_the_codes_statuses() -> None:
    row = next(line for line in CONTRACTS.read_text(encoding="utf-8").splitlines() if line.startswith("| `_status`"))
    assert tuple(re.findall(r"`([a-z]+)`", row.split("|")[3])) == STATUSES


def _string_args(call: ast.Call) -> Iterator[str]:
    for arg in (*call.args, *(k.value for k in call.keywords if k.arg in ("code", "error_code"))):
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value


def own_error_codes() -> set[str]:
    """Codes of our own the pipeline can put in ``_error_code``: the ``code=`` literals, the codes of
    rows decided without a request (``LocalOutcome(status, code, …)``) and the validator's verdicts."""
    codes: set[str] = set()
    for path in (REPO / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            literals = list(_string_args(node))
            if any(k.arg == "code" for k in node.keywords):
                codes.update(v.value for k in node.keywords if k.arg == "code"
                             for v in [k.value] if isinstance(v, ast.Constant) and isinstance(v.value, str))
            elif name in ("_local_meta", "LocalOutcome") and len(literals) >= 2:
                codes.add(literals[1])
            elif name in ("Reask", "Filtered") and literals:
                codes.add(literals[0])
    codes.update(REASK_DUE_CODES)  # an owed answer's codes, passed around by name
    return {c for c in codes if re.fullmatch(r"[a-z][a-z_]+", c)}


def documented_error_codes() -> set[str]:
    """The first column of the "Our own error codes" table in docs/contracts.md."""
    text = CONTRACTS.read_text(encoding="utf-8").split("Our own error codes", 1)[1]
    rows = re.findall(r"^\| (`[^|]+) \|", text.split("\n## ", 1)[0], flags=re.M)
    return {code for row in rows for code in re.findall(r"`([a-z][a-z_]+)`", row)}


def test_every_error_code_of_our_own_is_documented_and_every_documented_one_is_emitted() -> None:
    emitted, documented = own_error_codes(), documented_error_codes()
    assert emitted, "found no error code in the code: the scan is broken"
    assert not emitted - documented, f"emitted but not in docs/contracts.md: {sorted(emitted - documented)}"
    assert not documented - emitted, f"documented but never emitted: {sorted(documented - emitted)}"


def test_no_file_points_outside_the_repository() -> None:
    pattern = re.compile(r"\.\./shared|/work/shared|parent / \"shared\"|GLM_API\.md|PREFECT_NOTES|DESIGN\.md|STYLE\.md")
    folders = ("pipeline", "flows", "emulator", "benchmarks", "docs", "scripts", "tests", "schemas")
    offenders = [str(p.relative_to(REPO)) for folder in folders for p in (REPO / folder).rglob("*")
                 if p.suffix in (".py", ".md", ".toml") and p.name != "test_docs_honest.py"
                 and pattern.search(p.read_text(encoding="utf-8"))]
    offenders += [p.name for p in (README,) if pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"these point to files outside the repository: {offenders}"
