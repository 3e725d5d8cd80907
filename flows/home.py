"""Where a worker's flow run works: the pull step of prefect.yaml (``flows.home.enter_home``).

A deployment from prefect.yaml names its flow by a path relative to the checkout
(``flows/extract.py:extract_documents``), and relative input and output paths resolve against the
working directory. So before the flow is loaded, the worker's run must stand in the checkout:

- ``GLM_EXTRACT_HOME`` set: that directory, which must hold ``flows/extract.py``;
- unset: the checkout this very code was installed from (an editable install, the usual case),
  found from this module's own location;
- neither: the run stops before loading anything, with one line saying what to set.

The step returns ``{"directory": …}``, the shape Prefect's own ``set_working_directory`` returns, so
Prefect records the directory as the run's working directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.errors import GlmExtractError

HOME_VARIABLE = "GLM_EXTRACT_HOME"
ENTRYPOINT_FILE = Path("flows") / "extract.py"
INSTALLED_FROM = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def resolve_home(configured: str | None, installed_from: Path = INSTALLED_FROM) -> Path:
    """The checkout to work in (see the module docstring); :class:`GlmExtractError` when there is none."""
    if configured and configured.strip():
        home = Path(configured.strip()).expanduser()
        if not (home / ENTRYPOINT_FILE).is_file():
            raise GlmExtractError(
                f"{HOME_VARIABLE}={configured} holds no {ENTRYPOINT_FILE}: set {HOME_VARIABLE} to the glm-extract "
                "checkout whose virtualenv this worker runs in, then restart the worker"
            )
        return home.resolve()
    if (installed_from / ENTRYPOINT_FILE).is_file():
        return installed_from
    raise GlmExtractError(
        f"{HOME_VARIABLE} is not set and this glm-extract is not installed from a checkout: start the worker with "
        f"{HOME_VARIABLE}=/path/to/glm-extract (the checkout holding {ENTRYPOINT_FILE} and schemas/)"
    )


def enter_home() -> dict[str, str]:
    """Pull step: change into the checkout; Prefect's own step-output shape."""
    configured = os.environ.get(HOME_VARIABLE)
    home = resolve_home(configured)
    if not configured:
        log.warning("%s is not set: working in %s, the checkout glm-extract is installed from", HOME_VARIABLE, home)
    os.chdir(home)
    return {"directory": str(home)}
