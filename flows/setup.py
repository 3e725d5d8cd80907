"""One-time (idempotent) Prefect set-up of an account: the global limit, the key block, a work pool."""

from __future__ import annotations

from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from pydantic import SecretStr

from flows.limits import ensure_limit, limit_name, prefect_api_url, read_limit
from flows.secrets import save_secret_key
from pipeline.errors import GlmExtractError

NO_SERVER_HINT = (
    "no Prefect server configured: start one (`prefect server start`, see docs/operations.md) and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api; schedules and the account-wide limit need a real server"
)


@dataclass(frozen=True)
class SetupRequest:
    """What ``glm-extract prefect-setup`` (or ``serve``) should make sure of."""

    model: str
    cap: int
    overwrite_cap: bool = True
    key_block: str | None = None
    key: SecretStr | None = None
    work_pool: str | None = None


def require_server() -> str:
    """The configured Prefect API URL, or a one-line error saying how to get one."""
    url = prefect_api_url()
    if url is None:
        raise GlmExtractError(NO_SERVER_HINT)
    return url


async def set_up_account(request: SetupRequest) -> list[str]:
    """Apply ``request``; one line per thing done (never the key)."""
    name = limit_name(request.model)
    if request.overwrite_cap:
        lines = [f"global concurrency limit {name}: {await ensure_limit(name, request.cap)} (limit {request.cap})"]
    elif (current := await read_limit(name)) is not None:
        lines = [f"global concurrency limit {name}: kept (limit {current})"]
    else:
        lines = [f"global concurrency limit {name}: {await ensure_limit(name, request.cap)} (limit {request.cap})"]
    if request.key_block and request.key is not None:
        await save_secret_key(request.key_block, request.key.get_secret_value())
        lines.append(f"Secret block {request.key_block}: saved from the environment")
    if request.work_pool:
        lines.append(f"work pool {request.work_pool}: {await ensure_work_pool(request.work_pool)}")
    return lines


async def ensure_work_pool(name: str) -> str:
    """Create a process work pool (for prefect.yaml deployments) unless it exists."""
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return "exists"
    return "created"
