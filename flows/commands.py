"""``glm-extract prefect-setup`` and ``glm-extract serve``: run the flows under a Prefect server.

These commands belong to the application (``flows``), not to the library (``pipeline``): the
``glm-extract`` command finds them through the ``glm_extract.commands`` entry point declared in
pyproject.toml, so ``pipeline`` never imports ``flows``. Thin: options in, :mod:`flows.setup` /
:mod:`flows.deployments` called, one line per outcome. Prefect itself is imported inside the
commands, so every other command starts without Prefect's import cost. See docs/operations.md.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from pydantic import SecretStr

from pipeline.commands.console import fail, out
from pipeline.errors import GlmExtractError, first_line
from pipeline.platform import TIER_CAPS
from pipeline.settings import DEFAULT_MODEL, Settings

if TYPE_CHECKING:
    from flows.setup import SetupRequest


class Tier(StrEnum):
    """GLM account tiers (the in-flight cap of glm-4-air-250414 grows with the tier)."""

    V0 = "V0"
    V1 = "V1"
    V2 = "V2"
    V3 = "V3"


ModelOpt = Annotated[str, typer.Option(help="model; the global limit is named glm:MODEL")]
TierOpt = Annotated[Tier, typer.Option(help="account tier: V0..V3 caps " + "/".join(map(str, TIER_CAPS.values()))
                                            + " requests in flight")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="explicit cap (overrides --tier)")]


def register(app: typer.Typer) -> None:
    """Add ``prefect-setup`` and ``serve`` to ``app`` (the ``glm_extract.commands`` entry point)."""
    app.command("prefect-setup")(prefect_setup)
    app.command("serve")(serve)


def prefect_setup(
    *,
    model: ModelOpt = DEFAULT_MODEL,
    tier: TierOpt = Tier.V0,
    limit: LimitOpt = None,
    save_key: Annotated[bool, typer.Option(help="store ZHIPUAI_API_KEY from this shell in the Secret block")] = False,
    key_block: Annotated[str, typer.Option(help="Secret block name for the API key")] = "glm-api-key",
    work_pool: Annotated[str | None, typer.Option(help="also create this process work pool (prefect.yaml)")] = None,
) -> None:
    """Create or update the account's global concurrency limit glm:MODEL (idempotent)."""
    from flows.setup import SetupRequest, require_server

    try:
        key = key_to_save() if save_key else None  # refused before anything is contacted
        url = require_server()
        request = SetupRequest(model, cap_for(tier, limit), key_block=key_block, key=key, work_pool=work_pool)
        lines = apply_setup(request, url)
    except GlmExtractError as exc:
        raise fail(exc) from None
    out.print(f"Prefect API {url}", highlight=False)
    for line in lines:
        out.print(f"[green]✓[/] {line}", highlight=False)


def serve(
    *,
    runs: Annotated[int, typer.Option(min=1, help="flow runs this process executes at once")] = 4,
    model: ModelOpt = DEFAULT_MODEL,
    tier: TierOpt = Tier.V0,
    limit: LimitOpt = None,
    nightly_input: Annotated[str | None, typer.Option(help="nightly input ({partition_date} allowed)")] = None,
    nightly_output: Annotated[str | None, typer.Option(help="nightly output ({partition_date} allowed)")] = None,
) -> None:
    """Serve nightly-ticket-qa (02:00 Asia/Shanghai) and financial-report-extraction against a Prefect server."""
    from prefect import serve as prefect_serve

    from flows.deployments import DeploymentPaths, build_deployments
    from flows.setup import SetupRequest, require_server

    try:
        url = require_server()
        request = SetupRequest(model, cap_for(tier, limit), overwrite_cap=False)
        for line in apply_setup(request, url):
            out.print(f"[green]✓[/] {line}", highlight=False)
    except GlmExtractError as exc:
        raise fail(exc) from None
    defaults = DeploymentPaths()
    paths = DeploymentPaths(nightly_input=nightly_input or defaults.nightly_input,
                            nightly_output=nightly_output or defaults.nightly_output)
    prefect_serve(*build_deployments(paths), limit=runs, pause_on_shutdown=False)


def apply_setup(request: SetupRequest, url: str) -> list[str]:
    """Run the set-up against the server at ``url``; an unreachable or refusing server is one line."""
    from flows.setup import set_up_account

    try:
        return asyncio.run(set_up_account(request))
    except httpx.HTTPError as exc:
        raise GlmExtractError(
            f"the Prefect API at {url} did not answer as expected: {first_line(exc)} "
            "(is `prefect server start` running there? see docs/operations.md)"
        ) from None


def key_to_save() -> SecretStr:
    """The key ``--save-key`` stores: ZHIPUAI_API_KEY of this shell, refused when unset or blank."""
    key = Settings().api_key
    if key is None:
        raise GlmExtractError("--save-key: ZHIPUAI_API_KEY is not set in this shell; nothing was saved")
    if not key.get_secret_value().strip():
        raise GlmExtractError(
            "--save-key: ZHIPUAI_API_KEY is empty in this shell; export the key first, nothing was saved"
        )
    return key


def cap_for(tier: Tier, limit: int | None) -> int:
    """The global limit's size: explicit, else the tier's cap."""
    return limit or TIER_CAPS[tier.value]
