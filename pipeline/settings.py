"""One settings object, read once at the entry point and passed down.

Library code never reads ``os.environ``: the CLI and the flows build a :class:`Settings` and hand it
to the engine. The API key is a ``SecretStr`` so it never shows up in a repr, a log line or a
traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GLM_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
DEFAULT_MODEL = "glm-4-air-250414"
#: DEFAULT_MODEL's concurrency cap (requests in flight) per account tier (docs/glm_platform.md).
MAX_OUTPUT_TOKENS = 16384


class Settings(BaseSettings):
    """Every knob of a run. Environment prefix ``GLM_EXTRACT_``; the key also from ``ZHIPUAI_API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="GLM_EXTRACT_", extra="ignore", frozen=True, populate_by_name=True,
                                      hide_input_in_errors=True)  # an input may hold a secret

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY")
    )
    base_url: str | None = Field(default=None, description="None: GLM with a key, else the emulator",
                                 repr=False)  # it may carry user:password@
    model: str = DEFAULT_MODEL
    concurrency: int = Field(default=30, ge=1, le=1000, description="requests in flight at most")
    mode: Literal["json", "tools"] = "json"
    max_tokens: int = Field(default=4096, ge=1, le=MAX_OUTPUT_TOKENS)
    max_reasks: int = Field(default=2, ge=0, le=10)
    max_attempts: int = Field(default=8, ge=1, le=50, description="HTTP attempts per request")
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=8.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    price_cny_per_mtok: float = Field(default=0.5, ge=0)
    price_cached_cny_per_mtok: float = Field(
        default=0.25, ge=0, description="prompt tokens the platform served from its cache; UNCONFIRMED default "
        "(a third-party price table; docs/glm_platform.md)")
    emulator_profile: Literal["clean", "realistic"] = Field(default="realistic", description="offline emulator")
    emulator_tier: Literal["V0", "V1", "V2", "V3"] = Field(default="V0", description="offline emulator's cap")
    shard_size: int = Field(default=1000, ge=1, le=100_000)
    schemas_dir: Path = Field(default=Path("schemas"), description="tasks here first, then the bundled ones",
                              validation_alias=AliasChoices("GLM_EXTRACT_SCHEMAS", "GLM_EXTRACT_SCHEMAS_DIR"))
    journal_path: Path = Path(".glm-extract/journal.sqlite")
    budget_cny: float | None = Field(default=None, ge=0, description="never spend more than this")
    fatal_failure_ratio: float = Field(default=0.5, gt=0, le=1)

    @field_validator("base_url")
    @classmethod
    def _endpoint_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return value
        _check_endpoint_url(value)
        if info.data.get("api_key") is not None and urlsplit(value).netloc.count("@"):
            raise ValueError("the URL carries credentials (user:password@) and an API key is set: "
                             "HTTP sends one Authorization header, so use one of them")  # no URL: it holds them
        return value.rstrip("/")

    @field_validator("model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"must be a model id such as {DEFAULT_MODEL} (not blank, no spaces)")
        return value

    def max_tokens_for(self, task_max_tokens: int | None) -> int:
        """The answer's token limit: an explicit setting (``--max-tokens`` or the environment) wins,
        then the task's ``max_tokens``, then the default."""
        if task_max_tokens is None or "max_tokens" in self.model_fields_set:
            return self.max_tokens
        return task_max_tokens

    def api_key_value(self) -> str | None:
        """The key in clear text, for the Authorization header only."""
        return self.api_key.get_secret_value() if self.api_key else None


def _check_endpoint_url(value: str) -> None:
    """An http(s) URL with a host, to which ``/chat/completions`` is appended. The errors never quote
    the URL: its password, a query or a fragment may hold a key."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "?" in value or "#" in value:
        raise ValueError("must not carry a ?query or #fragment: requests go to BASE_URL/chat/completions "
                         "(percent-encode ? and # in a password)")
