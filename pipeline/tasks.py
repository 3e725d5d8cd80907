"""Load a task (JSON Schema + prompt template + settings) from ``schemas/<name>/`` and check it;
map its columns onto an input's columns.

Tasks are looked up in the configured folder first (``--schemas-dir``, ``GLM_EXTRACT_SCHEMAS`` or
``GLM_EXTRACT_SCHEMAS_DIR``, default ``./schemas``), then in the tasks shipped with the package, so
the bundled tasks are found wherever the command runs (docs/schema_authoring.md).
"""

from __future__ import annotations

import difflib
import re
import string
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from pipeline.errors import TaskError
from pipeline.keys import content_hash, schema_id
from pipeline.settings import MAX_OUTPUT_TOKENS

TASK_FILES = ("task.toml", "schema.json", "prompt.txt")
#: Every key ``task.toml`` may hold (docs/contracts.md §1): any other is a typo, refused at load.
TASK_KEYS = frozenset({"description", "id_column", "text_column", "prompt_version", "instructions",
                       "max_input_chars", "max_tokens", "pack_tokens", "pack_max", "defaults", "gold"})


def _bundled_schemas() -> Path:
    """The tasks shipped with glm-extract: ``schemas/`` of a checkout (or an editable install), else
    the copy an installed wheel puts in ``<prefix>/share/glm-extract/schemas``."""
    here = Path(__file__).resolve()
    checkout = here.parents[1] / "schemas"
    installed = [Path(sys.prefix), here.parents[4] if len(here.parents) > 4 else Path(sys.prefix)]
    candidates = [checkout, *(prefix / "share" / "glm-extract" / "schemas" for prefix in installed)]
    return next((folder for folder in candidates if any(folder.glob("*/task.toml"))), checkout)


BUNDLED_SCHEMAS = _bundled_schemas()

#: The value a template column other than the text takes when the input lacks it and the task's
#: ``[defaults]`` table names none.
FALLBACK_DEFAULT = "unknown"
_DOC_OPEN, _DOC_CLOSE = "<document>", "</document>"
_FRAME_TAGS = re.compile(re.escape(_DOC_OPEN) + "|" + re.escape(_DOC_CLOSE))


@dataclass(frozen=True)
class TaskSpec:
    """A loaded, checked task. ``schema_id`` and ``prompt_version`` go on every output row.

    Column names: ``text_column`` and ``template_columns`` are the template's names for its values;
    ``id_column`` is the input column of the id. :func:`bind_columns` maps template names onto other
    input columns (``sources``) and prefixes the extraction columns (``output_prefix``)."""

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
    defaults: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    output_prefix: str = ""
    pack_tokens: int | None = None  # packing on: at most this many item tokens a pack (docs/schema_authoring.md)
    pack_max: int | None = None  # at most this many rows a pack
    max_tokens: int | None = None  # the answer's token limit for this task (None: the settings')

    @cached_property
    def template(self) -> string.Template:
        """The compiled user-message template (built once, used for every row)."""
        return string.Template(self.prompt_template)

    @cached_property
    def template_columns(self) -> tuple[str, ...]:
        """Names the prompt template reads (``${name}``), in order of first use."""
        return tuple(dict.fromkeys(self.template.get_identifiers()))

    @property
    def optional_columns(self) -> tuple[str, ...]:
        """Template names other than the text: an input without them gets :meth:`default_for`."""
        return tuple(c for c in self.template_columns if c != self.text_column)

    def default_for(self, name: str) -> str:
        """The documented value of an optional template column the input lacks."""
        return self.defaults.get(name, FALLBACK_DEFAULT)

    def source(self, name: str) -> str:
        """The input column that feeds template name ``name``."""
        return self.sources.get(name, name)

    @property
    def text_source(self) -> str:
        """The input column holding the document."""
        return self.source(self.text_column)

    @property
    def output_fields(self) -> tuple[str, ...]:
        """Top-level schema properties: the answer's keys."""
        return tuple(self.schema.get("properties", {}))

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The extraction columns of the output table (``output_prefix`` + field)."""
        return tuple(self.output_prefix + name for name in self.output_fields)

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that shapes a request changes."""
        parts = [self.schema_id, self.prompt_template, self.instructions, self.prompt_version]
        return content_hash("\x00".join(parts).encode())


# -- where tasks live ---------------------------------------------------------------------------


def search_path(schemas_dir: Path | Sequence[Path]) -> tuple[Path, ...]:
    """The folders searched for tasks: the configured one(s), then the bundled tasks."""
    folders = [schemas_dir] if isinstance(schemas_dir, Path) else list(schemas_dir)
    unique: dict[Path, Path] = {}
    for folder in [*folders, BUNDLED_SCHEMAS]:
        unique.setdefault(folder.resolve(), folder)
    return tuple(unique.values())


def describe_folder(folder: Path) -> str:
    """An absolute folder name for messages, marked when it does not exist."""
    return str(folder.absolute()) + ("" if folder.is_dir() else " (no such folder)")


def list_tasks(schemas_dir: Path | Sequence[Path]) -> list[str]:
    """Names of the tasks found on the search path (the first folder holding a name wins)."""
    return sorted(find_tasks(schemas_dir))


def find_tasks(schemas_dir: Path | Sequence[Path]) -> dict[str, Path]:
    """Task name → its folder, over the search path."""
    found: dict[str, Path] = {}
    for folder in search_path(schemas_dir):
        if folder.is_dir():
            for sub in sorted(folder.iterdir()):
                if (sub / "task.toml").is_file():
                    found.setdefault(sub.name, sub)
    return found


@dataclass(frozen=True)
class TaskListing:
    """One line of ``glm-extract tasks``: a task that loads, or the one-line reason it does not."""

    name: str
    folder: Path
    spec: TaskSpec | None
    error: str | None


def survey_tasks(schemas_dir: Path | Sequence[Path]) -> list[TaskListing]:
    """Every task on the search path; a broken one is listed with its error, not raised."""
    listings = []
    for name, folder in sorted(find_tasks(schemas_dir).items()):
        try:
            listings.append(TaskListing(name, folder, load_task_folder(name, folder), None))
        except TaskError as exc:
            listings.append(TaskListing(name, folder, None, str(exc)))
    return listings


def load_task(name: str, schemas_dir: Path | Sequence[Path]) -> TaskSpec:
    """Find and check task ``name``; raise :class:`TaskError` with one clear line."""
    found = find_tasks(schemas_dir)
    if name not in found:
        looked = ", ".join(describe_folder(f) for f in search_path(schemas_dir))
        known = ", ".join(sorted(found)) or "none"
        raise TaskError(f"unknown task {name!r}: looked in {looked}; known tasks: {known} "
                        "(set --schemas-dir or GLM_EXTRACT_SCHEMAS to a folder of tasks)")
    return load_task_folder(name, found[name])


def load_task_folder(name: str, folder: Path) -> TaskSpec:
    """Read and check the task in ``folder``."""
    for file_name in TASK_FILES:
        if not (folder / file_name).is_file():
            raise TaskError(f"task {name!r}: missing file {folder / file_name}")
    meta = _read_toml(folder / "task.toml")
    problem = unknown_key_problem(meta)
    if problem:
        raise TaskError(f"{folder / 'task.toml'}: {problem}")
    schema_text = _read_text(folder / "schema.json")
    schema = _parse_schema(folder / "schema.json", schema_text)
    template = _read_text(folder / "prompt.txt")
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
        defaults=_defaults(meta, folder),
    )
    pack_tokens, pack_max = _pack_settings(meta, folder)
    spec = replace(spec, pack_tokens=pack_tokens, pack_max=pack_max, max_tokens=_max_tokens(meta, folder))
    _check_template(spec, folder / "prompt.txt")
    unknown = sorted(set(spec.defaults) - set(spec.optional_columns))
    if unknown:
        raise TaskError(f"{folder}/task.toml: [defaults] names {unknown[0]!r}, which is not a template column "
                        f"other than the text ({', '.join(spec.optional_columns) or 'none'})")
    return spec


# -- mapping a task's columns onto an input -----------------------------------------------------


def parse_column_mapping(items: Iterable[str], option: str = "--column") -> dict[str, str]:
    """``["text=content", "channel=source"]`` → ``{"text": "content", "channel": "source"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise TaskError(f"{option} expects NAME=INPUT_COLUMN, got {item!r}")
        if name in mapping and mapping[name] != column:
            raise TaskError(f"{option} maps {name!r} twice ({mapping[name]!r} and {column!r})")
        mapping[name] = column
    return mapping


def bind_columns(task: TaskSpec, mapping: Mapping[str, str], output_prefix: str = "") -> TaskSpec:
    """``task`` reading its columns from the input columns ``mapping`` names (template name or id
    column → input column), with ``output_prefix`` before every extraction column."""
    names = (task.id_column, *task.template_columns)
    for name in mapping:
        if name not in names:
            raise TaskError(f"--column {name}=…: task {task.name!r} has no column {name!r} "
                            f"(its columns: {', '.join(dict.fromkeys(names))})")
    if output_prefix and not re.fullmatch(r"[^\W\d]\w*", output_prefix):
        raise TaskError(f"--output-prefix {output_prefix!r}: use letters, digits and '_', not starting with a digit")
    if output_prefix.startswith("_"):
        raise TaskError(f"--output-prefix {output_prefix!r}: names starting with '_' are the meta columns")
    sources = {k: v for k, v in mapping.items() if k in task.template_columns}
    gold = {output_prefix + path: entry for path, entry in task.gold.items()}
    return replace(task, id_column=mapping.get(task.id_column, task.id_column), sources=sources,
                   output_prefix=output_prefix, gold=gold)


# -- checks ---------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TaskError(f"{path}: cannot read ({exc.strerror})") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(_read_text(path))
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
    problem = field_name_problem(schema) or schema_problem(schema)
    if problem:
        raise TaskError(f"{path}: {problem}")
    return schema


def unknown_key_problem(meta: Mapping[str, Any]) -> str | None:
    """The first top-level ``task.toml`` key that is not in :data:`TASK_KEYS` (a typo would otherwise
    be ignored: ``max_input_char = 10`` caps nothing), with the nearest known key; or None."""
    for key in meta:
        if key not in TASK_KEYS:
            near = difflib.get_close_matches(key, sorted(TASK_KEYS), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(sorted(TASK_KEYS))}"
            return f"unknown key {key!r} ({hint})"
    return None


def field_name_problem(schema: Mapping[str, Any]) -> str | None:
    """A top-level property whose name starts with ``_``, or None: top-level properties become output
    columns, and names starting with ``_`` are the meta columns every output adds (``_status`` …).
    Nested names become struct fields inside a column, where they meet nothing."""
    for name in schema.get("properties", {}):
        if name.startswith("_"):
            return (f"property {name!r} starts with '_', which names the meta columns every output adds "
                    "(_status, _error_code, …): rename the property")
    return None


def schema_problem(node: Mapping[str, Any], where: str = "$") -> str | None:
    """The first breach of the authoring rules the model relies on, or None: every property has a
    description (it is the field's prompt), and a nullable enum lists ``null`` among its values
    (else a model's ``null`` fails validation and is paid for again as a re-ask)."""
    kinds = node.get("type")
    enum = node.get("enum")
    if isinstance(kinds, list) and "null" in kinds and isinstance(enum, list) and None not in enum:
        return f"{where}: a nullable enum must list null among its values (\"enum\": [..., null])"
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, child in properties.items():
            if not isinstance(child, dict):
                continue
            description = child.get("description")
            if not isinstance(description, str) or not description.strip():
                return f"{where}.{name}: every property needs a description (it tells the model what the field is)"
            problem = schema_problem(child, f"{where}.{name}")
            if problem:
                return problem
    items = node.get("items")
    if isinstance(items, dict):
        return schema_problem(items, f"{where}[]")
    for group in ("$defs", "definitions"):
        for name, child in (node.get(group) or {}).items():
            if isinstance(child, dict) and (problem := schema_problem(child, f"{where}.{group}.{name}")):
                return problem
    return None


def _check_template(spec: TaskSpec, path: Path) -> None:
    template = string.Template(spec.prompt_template)
    if not template.is_valid():
        raise TaskError(f"{path}: invalid placeholder (use ${{column}}; write $$ for a dollar sign)")
    if spec.text_column not in spec.template_columns:
        raise TaskError(f"{path}: the template never uses the text column ${{{spec.text_column}}}")
    problem = frame_problem(spec.prompt_template, spec.text_column)
    if problem:
        raise TaskError(f"{path}: {problem}")


def frame_problem(template: str, text_column: str) -> str | None:
    """Each use of the text placeholder must sit inside a ``<document>`` … ``</document>`` frame:
    the nearest frame tag before it opens, the nearest after it closes. Prose elsewhere may mention
    the tags."""
    tags = [(m.start(), m.group()) for m in _FRAME_TAGS.finditer(template)]
    placeholder = re.compile(r"\$(?:\{" + re.escape(text_column) + r"\}|" + re.escape(text_column) + r"(?!\w))")
    for use in placeholder.finditer(template):
        if template[: use.start()].endswith("$"):
            continue  # "$${text}" is an escaped dollar sign, not a placeholder
        before = [tag for pos, tag in tags if pos < use.start()]
        after = [tag for pos, tag in tags if pos >= use.end()]
        if not before or before[-1] != _DOC_OPEN or not after or after[0] != _DOC_CLOSE:
            return f"the template must put ${{{text_column}}} inside a {_DOC_OPEN} … {_DOC_CLOSE} frame"
    return None


def _defaults(meta: dict[str, Any], folder: Path) -> dict[str, str]:
    table = meta.get("defaults", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise TaskError(f"{folder}/task.toml: [defaults] must map template columns to strings")
    return dict(table)


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


DEFAULT_PACK_MAX = 10


def _max_tokens(meta: dict[str, Any], folder: Path) -> int | None:
    """``max_tokens``: a bound on one answer that fits the task's schema, up to the model's 16,384."""
    value = _optional_int(meta, "max_tokens", folder)
    if value is not None and not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise TaskError(f"{folder}/task.toml: 'max_tokens' must be between 1 and {MAX_OUTPUT_TOKENS} "
                        "(the model's most)")
    return value


def _pack_settings(meta: dict[str, Any], folder: Path) -> tuple[int | None, int | None]:
    """``pack_tokens`` turns packing on; ``pack_max`` (default 10, at least 2) only with it."""
    tokens = _optional_int(meta, "pack_tokens", folder)
    most = _optional_int(meta, "pack_max", folder)
    if tokens is None:
        if most is not None:
            raise TaskError(f"{folder}/task.toml: 'pack_max' needs 'pack_tokens' (packing is off without it)")
        return None, None
    if most is not None and most < 2:
        raise TaskError(f"{folder}/task.toml: 'pack_max' must be at least 2 (a pack of one is an unpacked request)")
    return tokens, most or DEFAULT_PACK_MAX
