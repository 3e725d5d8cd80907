"""Decide where requests go: GLM with a key, any OpenAI-compatible URL, or the bundled emulator.

Offline, the bundled emulator runs the settings' behaviour profile (``realistic`` by default) and
is capped by the account tier (``emulator_tier``: V0..V3 = 30/40/50/60 in flight), never by the
client's own ``concurrency``: a client set above its tier meets 1302 offline as it would online.

A custom URL is probed once before the run (``GET {base_url}/models``, no credentials): an emulator
answers every path with its ``X-GLM-Emulator`` header, and then the run keys, labels and prices its
answers as synthetic from the first request on. (The client also reads that header on every
answer; see docs/emulator.md.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from pipeline.glm.client import SYNTHETIC_HEADER, Endpoint
from pipeline.platform import TIER_CAPS
from pipeline.redact import without_credentials
from pipeline.runner import Target
from pipeline.settings import GLM_BASE_URL, Settings

OFFLINE_BANNER = (
    "OFFLINE: no ZHIPUAI_API_KEY set — using the bundled GLM emulator on 127.0.0.1; "
    "answers are synthetic, not a model's"
)
PROBE_TIMEOUT = httpx.Timeout(3.0)


def needs_emulator(settings: Settings) -> bool:
    """No key and no explicit endpoint: run offline against the emulator."""
    return settings.api_key is None and settings.base_url is None


def online_target(settings: Settings) -> Target:
    """The configured endpoint: GLM itself (default URL) or a custom OpenAI-compatible one."""
    base_url = settings.base_url or GLM_BASE_URL
    endpoint = Endpoint(base_url, settings.api_key_value())
    if base_url == GLM_BASE_URL:
        return Target(endpoint, "glm")
    return Target(endpoint, "custom", synthetic=answers_synthetic(base_url))


def answers_synthetic(base_url: str) -> bool:
    """Whether the server at ``base_url`` says it is an emulator (False when it cannot be reached:
    the header on each answer still marks them)."""
    try:
        probe = without_credentials(base_url).rstrip("/") + "/models"  # no credentials, not even the URL's
        response = httpx.get(probe, timeout=PROBE_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError:
        return False
    return SYNTHETIC_HEADER in response.headers


@contextmanager
def resolve_target(settings: Settings, *, emulator_latency: str | None = None) -> Iterator[Target]:
    """Yield the run's target, starting (and finally stopping) the emulator when offline.

    ``emulator_latency``: a latency spec overriding the profile's (``realistic``, ``fixed:0.2`` …).
    """
    if not needs_emulator(settings):
        yield online_target(settings)
        return
    from emulator.config import EmulatorConfig, LatencySpec
    from emulator.process import start_emulator

    overrides = {"latency": LatencySpec.parse(emulator_latency)} if emulator_latency else {}
    config = EmulatorConfig.for_profile(settings.emulator_profile, concurrency=TIER_CAPS[settings.emulator_tier],
                                        **overrides)
    with start_emulator(config) as emulator:
        yield Target(Endpoint(emulator.base_url), "emulator", synthetic=True)
