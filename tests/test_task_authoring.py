"""What docs/schema_authoring.md promises a task author, checked against the loader itself:
its examples load as written, and it refuses what the guide says it refuses."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import orjson
import pytest

from pipeline.errors import TaskError
from pipeline.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "schema_authoring.md"
SCHEMAS = ROOT / "schemas"
MAKEFILE = ROOT / "Makefile"
#: A line naming a task file (`schemas/<task>/<file>`), then the fenced block that holds it.
_EXAMPLE = re.compile(r"^`schemas/(?P<task>\w+)/(?P<file>task\.toml|schema\.json|prompt\.txt)`\n"
                      r"```\w*\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def guide_examples() -> dict[str, dict[str, str]]:
    examples: dict[str, dict[str, str]] = {}
    for match in _EXAMPLE.finditer(GUIDE.read_text(encoding="utf-8")):
        examples.setdefault(match["task"], {})[match["file"]] = match["body"]
    return examples


def test_the_guide_has_a_complete_example() -> None:
    assert {name: sorted(files) for name, files in guide_examples().items()} == {
        "invoice_lines": ["prompt.txt", "schema.json", "task.toml"]}


@pytest.mark.parametrize("name", sorted(guide_examples()))
def test_every_example_of_the_guide_loads_as_written(tmp_path: Path, name: str) -> None:
    for file_name, body in guide_examples()[name].items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / file_name).write_text(body, encoding="utf-8")
    spec = load_task(name, tmp_path)
    assert spec.name == name and spec.output_fields


def test_the_guide_example_mentions_the_frame_tags_in_its_prose() -> None:
    """The case that broke before: prose naming <document> beside the real frame."""
    prompt = guide_examples()["invoice_lines"]["prompt.txt"]
    assert prompt.count("<document>") == 2


def the_guide_python_snippet() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match, "the guide has a Python snippet"
    return match.group(1)


def test_the_guide_python_snippet_reads_a_file_the_cli_writes() -> None:
    read = re.findall(r"read_parquet\(\"([^\"]+)\"\)", the_guide_python_snippet())
    assert read, "the snippet reads an enriched table"
    written = re.findall(r"--output \$\(OUT\)/(\S+\.parquet)", MAKEFILE.read_text())
    assert all(Path(path).name in written for path in read), (read, written)


def own_copy(tmp_path: Path, task: str = "ticket_qa") -> Path:
    folder = tmp_path / task
    shutil.copytree(SCHEMAS / task, folder)
    return folder


def edit_schema(folder: Path, edit: object) -> None:
    schema = orjson.loads((folder / "schema.json").read_bytes())
    edit(schema)  # type: ignore[operator]
    (folder / "schema.json").write_bytes(orjson.dumps(schema))


def test_a_property_without_description_is_refused_as_the_guide_says(tmp_path: Path) -> None:
    folder = own_copy(tmp_path)
    edit_schema(folder, lambda s: s["properties"]["risk_flags"]["properties"]["churn_risk"].pop("description"))
    with pytest.raises(TaskError, match=r"schema.json: \$.risk_flags.churn_risk: every property needs a description"):
        load_task("ticket_qa", tmp_path)


def test_a_nullable_enum_without_null_is_refused_as_the_guide_says(tmp_path: Path) -> None:
    folder = own_copy(tmp_path)

    def nullable_enum(schema: dict[str, object]) -> None:
        node = schema["properties"]["sentiment"]  # type: ignore[index]
        node["type"] = ["string", "null"]
        node["enum"] = [v for v in node["enum"] if v is not None]

    edit_schema(folder, nullable_enum)
    with pytest.raises(TaskError, match=r"\$.sentiment: a nullable enum must list null among its values"):
        load_task("ticket_qa", tmp_path)


@pytest.mark.parametrize("prompt", [
    "Inspect this: ${text}\n",  # no frame
    "<document>\n</document>\n${text}\n",  # a frame, but the text is outside it
    "</document>\n${text}\n<document>\n",  # tags the wrong way round
])
def test_the_text_outside_a_document_frame_is_still_refused(tmp_path: Path, prompt: str) -> None:
    folder = own_copy(tmp_path)
    (folder / "prompt.txt").write_text(prompt)
    with pytest.raises(TaskError, match=r"must put \$\{text\} inside a <document> … </document> frame"):
        load_task("ticket_qa", tmp_path)


def test_a_default_for_a_column_the_template_does_not_read_is_refused(tmp_path: Path) -> None:
    folder = own_copy(tmp_path)
    with (folder / "task.toml").open("a") as toml:
        toml.write('\n[defaults]\nchanel = "chat"\n')
    with pytest.raises(TaskError, match=r"\[defaults\] names 'chanel', which is not a template column"):
        load_task("ticket_qa", tmp_path)


def test_a_task_file_that_is_not_utf8_is_one_line_and_the_other_tasks_still_list(tmp_path: Path) -> None:
    from pipeline.tasks import survey_tasks

    own_copy(tmp_path, "ticket_qa")
    broken = own_copy(tmp_path, "financial_report")
    (broken / "prompt.txt").write_bytes("<document>\n${text}\n</document>\n".encode("utf-16"))
    listing = {item.name: item for item in survey_tasks(tmp_path)}
    assert listing["ticket_qa"].spec is not None
    error = listing["financial_report"].error
    assert error is not None and "prompt.txt: not UTF-8 text" in error
