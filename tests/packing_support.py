"""Copies of the bundled tasks with ticket_qa's packing settings replaced (the packing tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import SCHEMAS


def packing_schemas(tmp_path: Path, packing: str) -> Path:
    """A copy of the bundled tasks with ticket_qa's pack settings replaced by ``packing``."""
    folder = tmp_path / f"schemas-{abs(hash(packing))}"
    if not folder.exists():
        shutil.copytree(SCHEMAS, folder)
        toml = folder / "ticket_qa" / "task.toml"
        lines = [ln for ln in toml.read_text(encoding="utf-8").splitlines()
                 if not ln.startswith(("pack_tokens", "pack_max"))]
        toml.write_text(packing + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return folder
