"""Commands other packages add to ``glm-extract``, found through the ``glm_extract.commands`` entry point.

An entry point names a function taking the typer app (``register(app)``). The Prefect commands of
the application (``flows.commands:register``) arrive this way, so the library never imports the
application: the dependency points from ``flows`` to ``pipeline`` only (docs/decisions.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

import typer

GROUP = "glm_extract.commands"
log = logging.getLogger(__name__)


def register_installed(app: typer.Typer, found: Iterable[EntryPoint] | None = None) -> list[str]:
    """Call every installed ``glm_extract.commands`` entry point with ``app``; the names registered.

    One that cannot be loaded is reported on the log and skipped: the rest of the CLI still works.
    """
    registered: list[str] = []
    for entry in found if found is not None else entry_points(group=GROUP):
        try:
            register: Callable[[typer.Typer], None] = entry.load()
        except ImportError as exc:
            log.warning("commands %s (%s) not available: %s", entry.name, entry.value, exc)
            continue
        register(app)
        registered.append(entry.name)
    return registered
