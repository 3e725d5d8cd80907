"""Fixtures of the flow tests: one session-wide Prefect test harness."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for every end-to-end flow test of the session (~20-30 s)."""
    from prefect.testing.utilities import prefect_test_harness

    saved = {name: os.environ.get(name) for name in QUIET_PREFECT}
    os.environ.update(QUIET_PREFECT)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
