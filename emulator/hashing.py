"""Deterministic hashing: content keys and uniform draws from sha256, never Python's ``hash()``.

Everything random in the emulator is a function of these digests, so the same request content and
seed give the same answer, latency and fault in every run and every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pipeline.keys import canonical_json, request_key  # one canonical form for keys and content hashes

__all__ = ["canonical_json", "content_key", "digest", "pick_index", "short_hex", "unit_float"]

_SEP = b"\x1f"
_TWO_64 = float(2**64)


def content_key(body: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical body without ``request_id``."""
    return request_key(body)


def digest(*parts: str | int) -> bytes:
    """sha256 over the parts, separated so that ("ab","c") and ("a","bc") differ."""
    return hashlib.sha256(_SEP.join(str(p).encode() for p in parts)).digest()


def unit_float(*parts: str | int) -> float:
    """A uniform draw in [0, 1) determined by the parts."""
    return int.from_bytes(digest(*parts)[:8], "big") / _TWO_64


def pick_index(n: int, *parts: str | int) -> int:
    """A deterministic index in ``range(n)`` (n >= 1)."""
    return int.from_bytes(digest(*parts)[:8], "big") % n


def short_hex(*parts: str | int, length: int = 24) -> str:
    """A deterministic hex id of ``length`` characters."""
    return digest(*parts).hex()[:length]
