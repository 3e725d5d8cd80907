"""Canonical JSON and content hashes: the identity of a request, hence of a paid answer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

HASH_PREFIX = "sha256:"
#: ``endpoint_id`` of answers an emulator gave (bundled, or recognised by its header): synthetic.
SYNTHETIC_ENDPOINT = "emulator"
_VOLATILE_FIELDS = frozenset({"request_id"})


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_hash(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``; the algorithm travels with the digest."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def request_key(body: Mapping[str, Any], endpoint_id: str = "") -> str:
    """Key of a request body, ignoring fields that change per attempt (``request_id``).

    ``endpoint_id`` separates answers that must never stand in for each other: synthetic answers
    (any emulator's) use :data:`SYNTHETIC_ENDPOINT`, real endpoints ``""``.
    """
    stable: dict[str, Any] = {k: v for k, v in body.items() if k not in _VOLATILE_FIELDS}
    if endpoint_id:
        stable["\x00endpoint"] = endpoint_id
    return content_hash(canonical_json(stable))


def schema_id(schema: Mapping[str, Any]) -> str:
    """Identity of a JSON Schema, stored on every row it judged."""
    return content_hash(canonical_json(schema))
