"""The GLM API key: from a Prefect Secret block, else the worker's environment; never logged.

The key is never a flow parameter (parameters are stored and shown in the UI), never in an
artifact or a log line: it lives in a ``SecretStr`` and leaves it only for the Authorization
header. As a belt-and-braces measure, :func:`redact_in_logs` masks it in every log record that
Prefect's handlers ship.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

from prefect.blocks.system import Secret
from prefect.logging.filters import redact_substr
from pydantic import SecretStr

from pipeline.errors import GlmExtractError

KeySource = Literal["secret block", "environment", "none"]


async def load_secret_key(block_name: str) -> SecretStr | None:
    """The value of Secret block ``block_name``; None when no such block exists."""
    try:
        block = cast(Secret[str], await Secret.aload(block_name))
    except ValueError:  # "Unable to find block document named …"
        return None
    value = block.get()
    return SecretStr(str(value)) if value else None


def describe_key_source(from_block: SecretStr | None, env_key: SecretStr | None) -> KeySource:
    """Where the run's key came from, for the log (never the key itself)."""
    if from_block is not None:
        return "secret block"
    return "environment" if env_key is not None else "none"


async def save_secret_key(block_name: str, key: str) -> None:
    """Store ``key`` in Secret block ``block_name`` (overwrites); an empty or blank key is refused."""
    if not key.strip():
        raise GlmExtractError(f"refusing to store an empty API key in Secret block {block_name}")
    await Secret(value=SecretStr(key)).asave(block_name, overwrite=True)


class RedactFilter(logging.Filter):
    """Replace a secret by asterisks in a record's rendered message."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = redact_substr(message, self.secret), None
        return True


def redact_in_logs(key: SecretStr | None) -> None:
    """Mask ``key`` in every record handled by Prefect's and the root logger's handlers."""
    if key is None or not key.get_secret_value():
        return
    secret = key.get_secret_value()
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactFilter) and f.secret == secret for f in handler.filters):
                handler.addFilter(RedactFilter(secret))
