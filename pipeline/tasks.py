"""Load a task (JSON Schema + prompt template + settings) from ``schemas/<name>/`` and check it."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from pipeline.errors import TaskError
from pipeline.keys import content_hash, schema_id

TASK_FILES = ("task.toml", "schema.json", "prompt.txt")


@dataclass(frozen=True)
class TaskSpec:
    """A loaded, checked task. ``schema_id`` and ``prompt_version`` go on every output row."""

    name: str
    description: str
    schema: dict[str, Any]
    schema_text: str
    prompt_template: str
    instructions: str
    id_column: str
    text_column: str
    prompt_version: str
    schema_id: str
    max_input_chars: int | None
    gold: dict[str, Any]

    @cached_property
    def template(self) -> string.Template:
        """The compiled user-message template (built once, used for every row)."""
        return string.Template(self.prompt_template)

    @cached_property
    def template_columns(self) -> tuple[str, ...]:
        """Input columns the prompt template reads."""
        return tuple(self.template.get_identifiers())

    @property
    def output_fields(self) -> tuple[str, ...]:
        """Top-level schema properties: the extraction columns of the output table."""
        return tuple(self.schema.get("properties", {}))

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that shapes a request changes."""
        parts = [self.schema_id, self.prompt_template, self.instructions, self.prompt_version]
        return content_hash("\x00".join(parts).encode())


def list_tasks(schemas_dir: Path) -> list[str]:
    """Names of the task folders under ``schemas_dir``."""
    if not schemas_dir.is_dir():
        return []
    return sorted(p.name for p in schemas_dir.iterdir() if (p / "task.toml").is_file())


def load_task(name: str, schemas_dir: Path) -> TaskSpec:
    """Read and check ``schemas_dir/name``; raise :class:`TaskError` with one clear line."""
    folder = schemas_dir / name
    if not (folder / "task.toml").is_file():
        known = ", ".join(list_tasks(schemas_dir)) or "none"
        raise TaskError(f"unknown task {name!r} (no {folder}/task.toml); known tasks: {known}")
    for file_name in TASK_FILES:
        if not (folder / file_name).is_file():
            raise TaskError(f"task {name!r}: missing file {folder / file_name}")
    meta = _read_toml(folder / "task.toml")
    schema_text = (folder / "schema.json").read_text(encoding="utf-8")
    schema = _parse_schema(folder / "schema.json", schema_text)
    template = (folder / "prompt.txt").read_text(encoding="utf-8")
    spec = TaskSpec(
        name=name,
        description=str(meta.get("description", "")),
        schema=schema,
        schema_text=orjson.dumps(schema).decode(),
        prompt_template=template,
        instructions=str(meta.get("instructions", "")).strip(),
        id_column=_required_str(meta, "id_column", folder),
        text_column=_required_str(meta, "text_column", folder),
        prompt_version=_required_str(meta, "prompt_version", folder),
        schema_id=schema_id(schema),
        max_input_chars=_optional_int(meta, "max_input_chars", folder),
        gold=dict(meta.get("gold", {})),
    )
    _check_template(spec, folder / "prompt.txt")
    return spec


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: not valid TOML: {exc}") from exc


def _parse_schema(path: Path, text: str) -> dict[str, Any]:
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TaskError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise TaskError(f"{path}: a JSON Schema must be an object")
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "/".join(str(p) for p in exc.instance_path) or "(root)"
        raise TaskError(f"{path}: not a valid JSON Schema at {where}: {exc.message}") from exc
    except jsonschema_rs.ReferencingError as exc:
        raise TaskError(f"{path}: unresolvable $schema or $ref: {exc}") from exc
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise TaskError(f"{path}: the top level must be {{\"type\": \"object\", \"properties\": …}}")
    return schema


def _check_template(spec: TaskSpec, path: Path) -> None:
    template = string.Template(spec.prompt_template)
    if not template.is_valid():
        raise TaskError(f"{path}: invalid placeholder (use ${{column}}; write $$ for a dollar sign)")
    if spec.text_column not in spec.template_columns:
        raise TaskError(f"{path}: the template never uses the text column ${{{spec.text_column}}}")
    if spec.prompt_template.count("<document>") != 1 or spec.prompt_template.count("</document>") != 1:
        raise TaskError(f"{path}: the template must hold exactly one <document> … </document> frame")


def _required_str(meta: dict[str, Any], key: str, folder: Path) -> str:
    value = meta.get(key)
    if not isinstance(value, str) or not value:
        raise TaskError(f"{folder}/task.toml: {key!r} must be a non-empty string")
    return value


def _optional_int(meta: dict[str, Any], key: str, folder: Path) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or value <= 0:
        raise TaskError(f"{folder}/task.toml: {key!r} must be a positive integer")
    return value
