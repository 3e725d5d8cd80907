"""A one-field task (``names``: ``{"name": string}`` of each ``body``) for tests that need a tiny,
closed schema and a document frame; ``extra`` adds lines to its task.toml (packing, limits)."""

from __future__ import annotations

import json
from pathlib import Path

NAMES_SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "description": "who"}},
                "required": ["name"], "additionalProperties": False}


def write_names_task(root: Path, extra: str = "") -> Path:
    """``root/schemas/names`` written; returns ``root/schemas`` (a tasks folder)."""
    task = root / "schemas" / "names"
    task.mkdir(parents=True)
    (task / "schema.json").write_text(json.dumps(NAMES_SCHEMA))
    (task / "prompt.txt").write_text("Extract.\n<document>\n${body}\n</document>\n")
    (task / "task.toml").write_text('description = "names"\nid_column = "id"\ntext_column = "body"\n'
                                    f'prompt_version = "1"\n{extra}')
    return root / "schemas"
