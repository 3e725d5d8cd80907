"""Configuration values of the emulator: latency distribution, fault rates, caps.

Frozen value objects only; parsing of the CLI's text forms (``fixed:0.2``, ``1302=0.1``) lives here
so the CLI, the process launcher and tests share one spelling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pipeline.platform import TIER_CAPS

LatencyKind = Literal["fixed", "uniform", "lognormal", "tokens"]

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
    "wrong_enum",
    "missing_required",
    "string_for_number",
    "duplicate_key",
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
    """A latency model in seconds.

    ``fixed:S``, ``uniform:LO,HI`` and ``lognormal:MEDIAN,SIGMA`` ignore the request;
    ``tokens:TTFT,PREFILL,DECODE[,JITTER]`` is ``TTFT + prompt_tokens / PREFILL + completion_tokens / DECODE``
    (rates in tokens per second) times a lognormal factor of median 1 and sigma ``JITTER``.
    ``realistic`` names the default token model (see docs/emulator.md for the reasoning).
    """

    kind: LatencyKind = "fixed"
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "lognormal", "tokens"):
            raise ValueError(f"unknown latency kind {self.kind!r}")
        values = (self.a, self.b, self.c, self.d)
        if not all(math.isfinite(v) for v in values) or min(values) < 0:
            raise ValueError("latency parameters must be finite and >= 0")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("uniform latency needs lo <= hi")
        if self.kind == "tokens" and (self.b <= 0 or self.c <= 0):
            raise ValueError("token latency needs prefill and decode rates > 0 (tokens per second)")

    @classmethod
    def parse(cls, text: str) -> LatencySpec:
        """Parse ``fixed:0.2``, ``uniform:0.1,0.3``, ``lognormal:0.2,0.5``, ``tokens:0.4,20000,60,0.25``
        or a named model (``realistic``)."""
        named = NAMED_LATENCIES.get(text.strip())
        if named is not None:
            return named
        kind, _, params = text.strip().partition(":")
        values = [float(p) for p in params.split(",") if p.strip()]
        arity = {"fixed": (1,), "uniform": (2,), "lognormal": (2,), "tokens": (3, 4)}.get(kind)
        if arity is None or len(values) not in arity:
            raise ValueError(f"bad latency {text!r}: use fixed:S, uniform:LO,HI, lognormal:MEDIAN,SIGMA, "
                             f"tokens:TTFT,PREFILL,DECODE[,JITTER] or one of {', '.join(NAMED_LATENCIES)}")
        return cls(kind, *values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a!r}"
        if self.kind == "tokens":
            return f"tokens:{self.a!r},{self.b!r},{self.c!r},{self.d!r}"
        return f"{self.kind}:{self.a!r},{self.b!r}"


#: The default token model, an assumption (docs/emulator.md "Latency"): 0.4 s to the first token,
#: prefill at 20,000 prompt tokens/s, decode at 60 tokens/s, ±25 % per-request jitter.
REALISTIC_LATENCY = LatencySpec("tokens", 0.4, 20_000.0, 60.0, 0.25)
NAMED_LATENCIES: Mapping[str, LatencySpec] = MappingProxyType({"realistic": REALISTIC_LATENCY})


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


#: Accepted ``model`` names by default (case-insensitive): the GLM-4 family; others answer 1211.
GLM4_MODELS: tuple[str, ...] = (
    "glm-4", "glm-4-0520", "glm-4-air", "glm-4-air-250414", "glm-4-airx", "glm-4-flash", "glm-4-flash-250414",
    "glm-4-flashx", "glm-4-flashx-250414", "glm-4-plus", "glm-4-long", "glm-4-32b-0414-128k", "glm-4.5",
    "glm-4.5-air", "glm-4.5-x", "glm-4.5-airx", "glm-4.5-flash", "glm-4.6",
)  # fmt: skip
#: The context window in tokens (prompt plus nothing else is checked); a longer prompt answers 1261.
CONTEXT_TOKENS = 128_000
DEFAULT_TIER = "V0"


@dataclass(frozen=True, slots=True)
class Profile:
    """A named behaviour: latency model, fault rates and slow-down under load."""

    latency: LatencySpec
    faults: Mapping[str, float]
    load_slowdown: float = 0.0


#: ``clean``: instant, always well-formed (tests). ``realistic``: token latency and a small share of
#: answers that are not what was asked, at the rates documented in docs/emulator.md "Profiles".
PROFILES: Mapping[str, Profile] = MappingProxyType({
    "clean": Profile(LatencySpec(), MappingProxyType({})),
    "realistic": Profile(
        REALISTIC_LATENCY,
        MappingProxyType({
            "1302": 0.01, "500": 0.005, "fence": 0.03, "prose": 0.01, "truncated": 0.003, "wrong_enum": 0.02,
            "missing_required": 0.015, "string_for_number": 0.015, "sensitive_output": 0.002,
            "sensitive_input": 0.002,
        }),
        load_slowdown=0.25,
    ),
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes one emulator instance. ``port=0`` picks a free port.

    The Python default is the ``clean`` profile; :meth:`for_profile` starts from another one.
    """

    host: str = "127.0.0.1"
    port: int = 0
    concurrency: int = TIER_CAPS[DEFAULT_TIER]
    latency: LatencySpec = field(default_factory=LatencySpec)
    latency_scale: float = 1.0
    seed: int = 0
    faults: Mapping[str, float] = field(default_factory=dict)
    hang_seconds: float = 3600.0
    fatal_1113_from: int | None = None
    fatal_401_from: int | None = None
    api_key: str | None = field(default=None, repr=False)
    profile: str = "clean"
    load_slowdown: float = 0.0
    models: tuple[str, ...] = GLM4_MODELS
    context_tokens: int = CONTEXT_TOKENS

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", normalize_faults(self.faults))
        object.__setattr__(self, "models", tuple(m.strip().lower() for m in self.models if m.strip()))
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not (0 <= self.port <= 65535):
            raise ValueError("port must be in [0, 65535]")
        if self.latency_scale < 0 or self.hang_seconds < 0 or self.load_slowdown < 0:
            raise ValueError("latency_scale, load_slowdown and hang_seconds must be >= 0")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        if not self.models or self.context_tokens < 1:
            raise ValueError("models must not be empty and context_tokens must be >= 1")
        for name in ("fatal_1113_from", "fatal_401_from"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} counts requests from 1")

    @classmethod
    def for_profile(cls, name: str, **overrides: Any) -> EmulatorConfig:
        """A config with the profile's latency, faults and slow-down; ``overrides`` replace any field."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
        profile = PROFILES[name]
        base: dict[str, Any] = {"profile": name, "latency": profile.latency, "faults": profile.faults,
                                "load_slowdown": profile.load_slowdown}
        return cls(**{**base, **overrides})

    def to_argv(self) -> list[str]:
        """CLI arguments reproducing this config (the API key is NOT included: pass it by env)."""
        argv = [
            "--host", self.host, "--port", str(self.port), "--concurrency", str(self.concurrency),
            "--profile", self.profile, "--latency", str(self.latency), "--latency-scale", repr(self.latency_scale),
            "--load-slowdown", repr(self.load_slowdown), "--seed", str(self.seed),
            "--hang-seconds", repr(self.hang_seconds), "--models", ",".join(self.models),
            "--context-tokens", str(self.context_tokens),
        ]  # fmt: skip
        for name, rate in self.faults.items():
            argv += ["--fault", f"{name}={rate!r}"]
        if not self.faults:
            argv += ["--fault", "none"]  # else the profile's table would come back
        if self.fatal_1113_from is not None:
            argv += ["--fatal-1113-from", str(self.fatal_1113_from)]
        if self.fatal_401_from is not None:
            argv += ["--fatal-401-from", str(self.fatal_401_from)]
        return argv

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary without secrets (for the stats endpoint)."""
        return {
            "profile": self.profile,
            "concurrency": self.concurrency,
            "latency": str(self.latency),
            "latency_scale": self.latency_scale,
            "load_slowdown": self.load_slowdown,
            "seed": self.seed,
            "faults": dict(self.faults),
            "hang_seconds": self.hang_seconds,
            "fatal_1113_from": self.fatal_1113_from,
            "fatal_401_from": self.fatal_401_from,
            "auth": self.api_key is not None,
            "models": list(self.models),
            "context_tokens": self.context_tokens,
        }
