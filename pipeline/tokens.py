"""Token usage by the platform's published rule of thumb, read the way GLM's tokenizer splits text.

"1 token ≈ 0.75 English words or ≈ 1.5 Chinese characters" (docs/glm_platform.md, tokens), so
``tokens = ceil(cjk_chars / 1.5 + words / 0.75 + digit_groups + long_letters / 2 + spaces / 4)``. What a *word*
is follows how GLM-4's tokenizer splits text before its BPE merges (which never cross a split):

- every non-ASCII character counts as a Chinese character (CJK text, full-width punctuation; the
  odd accented letter or curly quote costs about what a tokenizer would charge for it);
- a *word* is a run of ASCII letters (split where a lower-case letter meets a capital, as in
  ``TrailRunner``) or a run of ASCII punctuation (``":"`` is one word: a tokenizer merges such runs
  into about one token); whitespace-split words would count a compact JSON object as one word;
- digits are split into groups of at most three and each group is a token (``13812345678`` is 4),
  as the tokenizer splits them; a run of letters and digits such as a hex dump is not one word;
- a letter run longer than 12 (base64, random ids) costs a token per 2 letters, not one word;
- a punctuation run longer than 6 marks is a word per 6 (a dump of symbols, a text table's rules),
  runs of two or more whitespace characters a token per 4 (a tokenizer keeps them), and an emoji
  (a 4-byte character) 2.5 tokens.

Against two public BPE tokenizers this stays within about 0.8–1.25× on prose, ids, numbers, hex and
base64 (docs/performance.md, "Cost per row"); the rule it replaces counted a 2,000-character hex
dump as 2 tokens, which let a budget's reservations be far too small. Counting uses ``findall`` on
the UTF-8 bytes; each message adds ``MESSAGE_OVERHEAD`` tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

MESSAGE_OVERHEAD = 4

#: Letter words (split at a lower-to-upper change), digit runs, punctuation runs: GLM-4's splits.
_LETTERS = re.compile(rb"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_DIGITS = re.compile(rb"[0-9]+")
_PUNCT = re.compile(rb"[!-/:-@\[-`{-~]+")
_SPACES = re.compile(rb"\s{2,}")
_LEAD_TABLE = bytes(ord("c") if c >= 0xC0 else ord(" ") for c in range(256))  # UTF-8 lead bytes
_FOUR_BYTE_TABLE = bytes(ord("f") if c >= 0xF0 else ord(" ") for c in range(256))  # emoji and the like
LONG_WORD = 12  # a letter run longer than this is priced by its length (base64, random ids)
PUNCT_PER_WORD = 6  # a punctuation run is a word per this many marks (a BPE merges ~6 random marks a token)
SPACES_PER_TOKEN = 4  # runs of two or more whitespace characters (indents, blank lines, tables)
FOUR_BYTE_TOKENS = 2.5  # an emoji or other 4-byte character (cl100k: 2-4 tokens; 1.5 per CJK character)


@lru_cache(maxsize=512)  # system prompts repeat across a run's requests
def count_text_tokens(text: str) -> int:
    """Tokens of one text by the rule of thumb (0 for an empty text)."""
    if not text:
        return 0
    raw = text.encode("utf-8", "replace")
    non_ascii = four_byte = 0
    if not text.isascii():
        non_ascii = raw.translate(_LEAD_TABLE).count(b"c")
        four_byte = raw.translate(_FOUR_BYTE_TABLE).count(b"f")
    letters = _LETTERS.findall(raw)
    long_letters = [len(word) for word in letters if len(word) > LONG_WORD]
    punct = sum(max(1.0, len(run) / PUNCT_PER_WORD) for run in _PUNCT.findall(raw))
    words = len(letters) - len(long_letters) + punct
    digit_groups = sum((len(run) + 2) // 3 for run in _DIGITS.findall(raw))
    spaces = sum(len(run) for run in _SPACES.findall(raw)) / SPACES_PER_TOKEN
    cjk = (non_ascii - four_byte) / 1.5 + four_byte * FOUR_BYTE_TOKENS
    return math.ceil(cjk + words / 0.75 + digit_groups + sum(long_letters) / 2 + spaces)


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
