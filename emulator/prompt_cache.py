"""The implicit prefix cache: ``cached_tokens`` for a prompt prefix the emulator has seen recently.

GLM caches shared prompt prefixes by itself (no cache key, no write charge) and reports hits in
``usage.prompt_tokens_details.cached_tokens``. The emulator's rule, documented in docs/emulator.md:
a prompt is a chain of whole pieces, the tool definitions then each message in order; its cached
tokens are the tokens of the longest leading chain that an earlier admitted request also sent,
among the ``capacity`` most recently used chains (least recently used forgotten first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from emulator.hashing import canonical_json
from pipeline.tokens import MESSAGE_OVERHEAD, count_text_tokens, message_text

DEFAULT_CAPACITY = 100_000


def prompt_pieces(messages: Sequence[Mapping[str, Any]], tools: Any) -> list[int]:
    """Tokens of each piece: the tool definitions (0 without tools), then each message with overhead.

    Their sum is ``pipeline.tokens.count_prompt_tokens(messages, tools)``.
    """
    tools_tokens = count_text_tokens(canonical_json(tools).decode()) if tools else 0
    return [tools_tokens, *(count_text_tokens(message_text(m)) + MESSAGE_OVERHEAD for m in messages)]


class PrefixCache:
    """Chains of prompt pieces seen recently (one event loop, no locks)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._chains: OrderedDict[bytes, None] = OrderedDict()

    def use(self, messages: Sequence[Mapping[str, Any]], tools: Any, pieces: Sequence[int]) -> int:
        """Cached tokens of this prompt; then remember each of its leading chains."""
        digest = hashlib.sha256(canonical_json(tools or None)).digest()
        chains = [digest]
        for message in messages:
            digest = hashlib.sha256(digest + canonical_json(message)).digest()
            chains.append(digest)
        hit = 0
        for length in range(len(chains), 1, -1):  # a chain of the tools alone is no hit
            if chains[length - 1] in self._chains:
                hit = length
                break
        for chain in chains[1:]:
            self._chains[chain] = None
            self._chains.move_to_end(chain)
        while len(self._chains) > self.capacity:
            self._chains.popitem(last=False)
        return sum(pieces[:hit])

    def clear(self) -> None:
        self._chains.clear()
