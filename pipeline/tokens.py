"""Token usage by the platform's published rule of thumb.

"1 token ≈ 0.75 English words or ≈ 1.5 Chinese characters" (docs/glm_platform.md, tokens), so
``tokens = ceil(cjk_chars / 1.5 + words / 0.75)``. Two readings make it cheap and sensible:

- every non-ASCII character counts as a Chinese character (CJK text, full-width punctuation; the
  odd accented letter or curly quote costs about what a tokenizer would charge for it);
- a *word* is a run of ASCII letters/digits or a run of ASCII punctuation (``":"`` is one word):
  whitespace-split words would count a compact JSON object as one word, while a tokenizer merges
  such punctuation runs into about one token.

Counting uses ``bytes.translate`` and ``bytes.count`` instead of a per-word regex, which is many
times slower in CPython. Each message adds ``MESSAGE_OVERHEAD`` tokens.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

MESSAGE_OVERHEAD = 4

_ALNUM = (string.ascii_letters + string.digits).encode()
_PUNCT = bytes(c for c in range(33, 127) if c not in _ALNUM)
_WORD_TABLE = bytes(ord("a") if c in _ALNUM else ord(" ") for c in range(256))
_PUNCT_TABLE = bytes(ord("p") if c in _PUNCT else ord(" ") for c in range(256))
_LEAD_TABLE = bytes(ord("c") if c >= 0xC0 else ord(" ") for c in range(256))  # UTF-8 lead bytes


def _runs(translated: bytes, mark: bytes) -> int:
    return translated.count(b" " + mark) + (translated[:1] == mark)


@lru_cache(maxsize=512)  # system prompts repeat across a run's requests
def count_text_tokens(text: str) -> int:
    """Tokens of one text by the rule of thumb (0 for an empty text)."""
    if not text:
        return 0
    raw = text.encode("utf-8", "replace")
    non_ascii = 0 if text.isascii() else raw.translate(_LEAD_TABLE).count(b"c")
    words = _runs(raw.translate(_WORD_TABLE), b"a") + _runs(raw.translate(_PUNCT_TABLE), b"p")
    return math.ceil(non_ascii / 1.5 + words / 0.75)


def message_text(message: Mapping[str, Any]) -> str:
    """The text a message contributes: its content (text parts joined) and any tool calls."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    else:
        text = ""
    calls = message.get("tool_calls")
    if calls:
        text += " " + orjson.dumps(calls).decode()
    return text


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]], tools: Any = None) -> int:
    """Prompt tokens: every message's text plus overhead, plus the tool definitions if any."""
    total = sum(count_text_tokens(message_text(m)) + MESSAGE_OVERHEAD for m in messages)
    if tools:
        total += count_text_tokens(orjson.dumps(tools).decode())
    return total


def count_completion_tokens(text: str | None) -> int:
    """Completion tokens of an answer text (at least 1: the end-of-answer token)."""
    return max(1, count_text_tokens(text or ""))
