"""Decide where requests go: GLM with a key, any OpenAI-compatible URL, or the bundled emulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.glm.client import Endpoint
from pipeline.runner import Target
from pipeline.settings import GLM_BASE_URL, Settings

OFFLINE_BANNER = (
    "OFFLINE: no ZHIPUAI_API_KEY set — using the bundled GLM emulator on 127.0.0.1; "
    "answers are synthetic, not a model's"
)


def needs_emulator(settings: Settings) -> bool:
    """No key and no explicit endpoint: run offline against the emulator."""
    return settings.api_key is None and settings.base_url is None


def online_target(settings: Settings) -> Target:
    """The configured endpoint: GLM itself (default URL) or a custom OpenAI-compatible one."""
    base_url = settings.base_url or GLM_BASE_URL
    if base_url == GLM_BASE_URL:
        return Target(Endpoint(base_url, settings.api_key_value()), "glm")
    return Target(Endpoint(base_url, settings.api_key_value()), "custom")


@contextmanager
def resolve_target(settings: Settings, *, emulator_latency: str = "lognormal:0.15,0.3") -> Iterator[Target]:
    """Yield the run's target, starting (and finally stopping) the emulator when offline."""
    if not needs_emulator(settings):
        yield online_target(settings)
        return
    from emulator.config import EmulatorConfig, LatencySpec
    from emulator.process import start_emulator

    config = EmulatorConfig(concurrency=settings.concurrency, latency=LatencySpec.parse(emulator_latency))
    with start_emulator(config) as emulator:
        yield Target(Endpoint(emulator.base_url), "emulator")
