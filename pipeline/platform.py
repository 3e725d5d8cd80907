"""Facts of the GLM platform that both the pipeline and the emulator rely on (docs/glm_platform.md).
Kept free of imports so the emulator can read them without loading the pipeline's settings."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: In-flight cap of glm-4-air-250414 by account tier.
TIER_CAPS: Mapping[str, int] = MappingProxyType({"V0": 30, "V1": 40, "V2": 50, "V3": 60})
