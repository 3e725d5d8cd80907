"""Configuration values of the emulator: latency distribution, fault rates, caps.

Frozen value objects only; parsing of the CLI's text forms (``fixed:0.2``, ``1302=0.1``) lives here
so the CLI, the process launcher and tests share one spelling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

LatencyKind = Literal["fixed", "uniform", "lognormal"]

#: Faults the emulator can inject, in the order a draw walks them.
FAULT_NAMES: tuple[str, ...] = (
    "1302",
    "1303",
    "1305",
    "1312",
    "500",
    "503",
    "hang",
    "reset",
    "fence",
    "prose",
    "malformed",
    "schema_violation",
    "truncated",
    "empty",
    "sensitive_output",
    "sensitive_input",
)
#: Other spellings accepted on input.
FAULT_ALIASES: Mapping[str, str] = MappingProxyType(
    {"1301": "sensitive_input", "http500": "500", "http503": "503", "sensitive": "sensitive_output"}
)
#: The sticky fault: decided by (seed, content) only, so a filtered content is always filtered.
STICKY_FAULT = "sensitive_input"


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A latency distribution in seconds: ``fixed:a``, ``uniform:lo,hi`` or ``lognormal:median,sigma``."""

    kind: LatencyKind = "fixed"
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "lognormal"):
            raise ValueError(f"unknown latency kind {self.kind!r}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a < 0 or self.b < 0:
            raise ValueError("latency parameters must be finite and >= 0")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("uniform latency needs lo <= hi")

    @classmethod
    def parse(cls, text: str) -> LatencySpec:
        """Parse ``fixed:0.2``, ``uniform:0.1,0.3`` or ``lognormal:0.2,0.5``."""
        kind, _, params = text.strip().partition(":")
        values = [float(p) for p in params.split(",") if p.strip()]
        arity = {"fixed": 1, "uniform": 2, "lognormal": 2}.get(kind)
        if arity is None or len(values) != arity:
            raise ValueError(f"bad latency {text!r}: use fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA")
        return cls(kind, values[0], values[1] if arity == 2 else 0.0)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a!r}"
        return f"{self.kind}:{self.a!r},{self.b!r}"


def canonical_fault_name(name: str) -> str:
    """Map an alias to its fault name; raise ValueError for an unknown name."""
    name = FAULT_ALIASES.get(name.strip(), name.strip())
    if name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    return name


def parse_fault(text: str) -> tuple[str, float]:
    """Parse ``NAME=RATE`` (e.g. ``1302=0.1``)."""
    name, sep, rate = text.partition("=")
    if not sep:
        raise ValueError(f"bad fault {text!r}: use NAME=RATE")
    return canonical_fault_name(name), float(rate)


def normalize_faults(faults: Mapping[str, float]) -> Mapping[str, float]:
    """Validate fault rates and return a read-only, canonically named mapping."""
    out: dict[str, float] = {}
    for name, rate in faults.items():
        canon = canonical_fault_name(name)
        if not (0.0 <= rate <= 1.0):
            raise ValueError(f"fault rate for {canon} must be in [0, 1], got {rate}")
        if rate > 0:
            out[canon] = out.get(canon, 0.0) + float(rate)
    drawn = sum(rate for name, rate in out.items() if name != STICKY_FAULT)
    if drawn > 1.0 + 1e-9:
        raise ValueError(f"fault rates (other than {STICKY_FAULT}) sum to {drawn:.3f} > 1")
    return MappingProxyType(dict(sorted(out.items())))


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes one emulator instance. ``port=0`` picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0
    concurrency: int = 30
    latency: LatencySpec = field(default_factory=LatencySpec)
    latency_scale: float = 1.0
    seed: int = 0
    faults: Mapping[str, float] = field(default_factory=dict)
    hang_seconds: float = 3600.0
    fatal_1113_from: int | None = None
    fatal_401_from: int | None = None
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", normalize_faults(self.faults))
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not (0 <= self.port <= 65535):
            raise ValueError("port must be in [0, 65535]")
        if self.latency_scale < 0 or self.hang_seconds < 0:
            raise ValueError("latency_scale and hang_seconds must be >= 0")
        for name in ("fatal_1113_from", "fatal_401_from"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} counts requests from 1")

    def to_argv(self) -> list[str]:
        """CLI arguments reproducing this config (the API key is NOT included: pass it by env)."""
        argv = [
            "--host", self.host, "--port", str(self.port), "--concurrency", str(self.concurrency),
            "--latency", str(self.latency), "--latency-scale", repr(self.latency_scale),
            "--seed", str(self.seed), "--hang-seconds", repr(self.hang_seconds),
        ]  # fmt: skip
        for name, rate in self.faults.items():
            argv += ["--fault", f"{name}={rate!r}"]
        if self.fatal_1113_from is not None:
            argv += ["--fatal-1113-from", str(self.fatal_1113_from)]
        if self.fatal_401_from is not None:
            argv += ["--fatal-401-from", str(self.fatal_401_from)]
        return argv

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary without secrets (for the stats endpoint)."""
        return {
            "concurrency": self.concurrency,
            "latency": str(self.latency),
            "latency_scale": self.latency_scale,
            "seed": self.seed,
            "faults": dict(self.faults),
            "hang_seconds": self.hang_seconds,
            "fatal_1113_from": self.fatal_1113_from,
            "fatal_401_from": self.fatal_401_from,
            "auth": self.api_key is not None,
        }
