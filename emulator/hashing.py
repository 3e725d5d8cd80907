"""Deterministic hashing: content keys and uniform draws from sha256, never Python's ``hash()``.

Everything random in the emulator is a function of these digests, so the same request content and
seed give the same answer, latency and fault in every run and every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

_SEP = b"\x1f"
_TWO_64 = float(2**64)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 (the project's canonical form)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_key(body: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical body without ``request_id``."""
    stripped = {k: v for k, v in body.items() if k != "request_id"}
    return "sha256:" + hashlib.sha256(canonical_json(stripped)).hexdigest()


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
