"""The flow's parameters: one pydantic model that the Prefect UI renders as a form.

Only what a JSON Schema can say is checked by the server before a run is created
(``enforce_parameter_schema``): the task enum, patterns, bounds and unknown keys. So every rule
here is a field constraint, not a cross-field validator. The API key is never a parameter:
parameters are stored and shown in the UI (see flows/secrets.py).
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from pipeline.errors import GlmExtractError
from pipeline.settings import DEFAULT_MODEL
from pipeline.tasks import list_tasks

REPO = Path(__file__).resolve().parent.parent
PARTITION_TZ = ZoneInfo("Asia/Shanghai")
DATE_PLACEHOLDER = "{partition_date}"
DEFAULT_SECRET_BLOCK = "glm-api-key"
# A URI scheme other than file:// is not readable yet; reject it in the form, not mid-run.
_LOCAL_PATH = r"^(?![A-Za-z][A-Za-z0-9+.-]*://)|^file://"
# A password inside a warehouse target would be stored with the run's parameters: forbid it, whether
# in a URL's user part, a ``password=`` query parameter or libpq's key=value form (any case).
_NO_PASSWORD = r"^(?!.*://[^/@:]*:[^@]*@)(?!.*[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]\s*=)"


def default_schemas_dir() -> Path:
    """Where a worker's tasks live first: ``$GLM_EXTRACT_SCHEMAS`` (or ``$GLM_EXTRACT_SCHEMAS_DIR``), as for
    the CLI, else ``schemas/`` of this checkout; the bundled tasks are searched after it either way."""
    configured = os.environ.get("GLM_EXTRACT_SCHEMAS") or os.environ.get("GLM_EXTRACT_SCHEMAS_DIR")
    return Path(configured) if configured else REPO / "schemas"


# The dropdown of the form: the tasks found when this module is imported (deployment time).
TaskName = StrEnum("TaskName", {name: name for name in list_tasks(default_schemas_dir())})  # type: ignore[misc]


class RunMode(StrEnum):
    """How requests are sent; ``batch`` joins once the Batch API is wired in."""

    ONLINE = "online"


def _at(position: int) -> JsonDict:
    return {"position": position}


class ExtractParams(BaseModel):
    """One extraction run, as a person fills it in on the Prefect UI."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Extraction run", regex_engine="python-re",
                              hide_input_in_errors=True)  # an export target may hold a password

    task: TaskName = Field(title="Task", description="Task under schemas/: JSON Schema + prompt template.",
                           json_schema_extra=_at(0))
    input: str = Field(
        title="Input", min_length=1, pattern=_LOCAL_PATH, json_schema_extra=_at(1),
        description="Parquet file, glob (data/*.parquet) or folder, or a file:// URI. "
                    "`{partition_date}` is replaced by the partition date (YYYY-MM-DD).",
    )
    output: str = Field(
        title="Output", min_length=9, pattern=r"\.parquet$", json_schema_extra=_at(2),
        description="Enriched Parquet to write (a .summary.json lands beside it); "
                    "`{partition_date}` is replaced as in input.",
    )
    partition_date: date | None = Field(
        title="Partition date", default=None, json_schema_extra=_at(3),
        description="The day this run is about. Empty: yesterday in Asia/Shanghai (the nightly default).",
    )
    mode: RunMode = Field(title="Mode", default=RunMode.ONLINE, json_schema_extra=_at(4),
                          description="online: chat-completion requests now, under the account's cap.")
    model: str = Field(title="Model", default=DEFAULT_MODEL, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                       json_schema_extra=_at(5),
                       description="GLM model; also names the account-wide concurrency limit `glm:MODEL`.")
    concurrency: int = Field(title="Concurrency", default=30, ge=1, le=200, json_schema_extra=_at(6),
                             description="Requests in flight for this run at most; all runs together "
                                         "stay under the global concurrency limit `glm:MODEL`.")
    budget_cny: float | None = Field(title="Budget (CNY)", default=None, ge=0, json_schema_extra=_at(7),
                                     description="Never spend more than this (CNY): a request is sent only if its "
                                                 "worst case fits; rows past it end `skipped`. Empty: no budget.")
    export_to: str | None = Field(
        title="Export to warehouse", default=None, min_length=1, pattern=_NO_PASSWORD, json_schema_extra=_at(8),
        description="Warehouse to merge the output into: a .duckdb path, duckdb:///path, "
                    "`postgresql://USER@HOST/DB` (password from PGPASSWORD, never here) or `dlt:DESTINATION`. "
                    "Empty: no export.",
    )

    @field_validator("export_to")
    @classmethod
    def _no_password_as_libpq_reads_it(cls, value: str | None) -> str | None:
        """The pattern above shows the rule in the form; libpq's own parser decides (it also reads
        ``pass%77ord=`` and a key=value line after a newline as a password)."""
        from pipeline.warehouse.pg_dsn import is_postgres, parse_dsn, secrets

        if value is None or not is_postgres(value.strip()):
            return value
        try:
            params, _ = parse_dsn(value.strip())
        except GlmExtractError as exc:  # its message shows the target redacted
            raise ValueError(str(exc)) from None
        if secrets(params):
            raise ValueError("holds a password, which would be stored with the run's parameters: "
                             "set PGPASSWORD for the worker instead")
        return value

    estimate_only: bool = Field(title="Estimate only", default=False, json_schema_extra=_at(9),
                                description="Count rows, requests and the expected cost; send nothing, write nothing.")
    api_key_block: str = Field(title="API key Secret block", default=DEFAULT_SECRET_BLOCK, min_length=1, max_length=100,
                               pattern=r"^[a-z0-9][a-z0-9-]*$", json_schema_extra=_at(10),
                               description="Prefect Secret block holding the GLM API key "
                                           "(falls back to ZHIPUAI_API_KEY in the worker's environment).")
    columns: dict[str, str] = Field(
        title="Column mapping", default_factory=dict, json_schema_extra=_at(11),
        description="Task column → input column, e.g. {\"text\": \"content\"} when the document is in a column "
                    "named content (the task's columns: `glm-extract tasks`). Empty: the task's own names.",
    )
    output_prefix: str = Field(
        title="Output prefix", default="", max_length=32, pattern=r"^([^\W\d]\w*)?$", json_schema_extra=_at(12),
        description="Put before every extraction column, e.g. x_, when a schema field has an input column's name.",
    )
    priority: Literal["interactive", "batch"] = Field(
        title="Priority", default="interactive", json_schema_extra=_at(13),
        description="interactive: this run's shards get the account's slots before a batch run's next shards "
                    "(a run started by hand). batch: yield to interactive runs at each shard boundary (nightly).",
    )


def yesterday_in_shanghai(now: datetime | None = None) -> date:
    """The calendar day before ``now`` (default: the current time) in Asia/Shanghai."""
    moment = (now or datetime.now(PARTITION_TZ)).astimezone(PARTITION_TZ)
    return moment.date() - timedelta(days=1)


def partition_day(params: ExtractParams, now: datetime | None = None) -> date:
    """The partition date of a run: the parameter, else yesterday in Asia/Shanghai."""
    return params.partition_date or yesterday_in_shanghai(now)


def fill_date(template: str, day: date) -> str:
    """Replace ``{partition_date}`` with ``YYYY-MM-DD`` (no other brace is touched)."""
    return template.replace(DATE_PLACEHOLDER, day.isoformat())


def local_path(spec: str) -> str:
    """A path from a plain path or a ``file://`` URI."""
    return spec.removeprefix("file://")
