"""Token usage by the platform's published rule of thumb, read the way GLM's tokenizer splits text.

"1 token ≈ 0.75 English words or ≈ 1.5 Chinese characters" (docs/glm_platform.md, tokens), so
``tokens = ceil(non_ascii + words / 0.75 + digit_groups + long_letters / 2 + spaces / 4)``. What a *word*
is follows how GLM-4's tokenizer splits text before its BPE merges (which never cross a split):

- a non-ASCII character costs what its script costs (:data:`SCRIPT_TOKENS`): a Chinese character
  1/1.5 token, as do Japanese kana, full-width punctuation and accented Latin letters (the odd one
  costs about what a tokenizer charges for it); other scripts are charged per character at what a
  BPE charges them: Cyrillic about 0.55, Arabic 0.8, Greek, Hebrew and Thai 1, Hangul 1.15, a
  combining mark 1.25, the Indic scripts 1.3, Armenian, Georgian, Khmer 2, Hangul jamo 3; so are
  symbols: dashes, curly quotes and bullets 1, arrows, math, box drawing and dingbats (``→ ≤ ✅``) 2,
  currency and letterlike signs (``€ ℃ №``) 2.5, radicals 3;
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
dump as 2 tokens, which let a budget's reservations be far too small. On the other scripts the two
BPEs disagree by up to 4.5× (o200k's vocabulary knows them, cl100k's falls back to bytes): the rates
follow the higher, within 0.8–1.3× of it on tickets in each (tests/data/tokens_scripts.toml), since
the budget reserves by this count until the platform's first answer shows what it bills (the rule
had counted every non-ASCII character as Chinese: 0.25–0.8× of it, Cyrillic 1.4×). Counting uses
``findall`` on the UTF-8 bytes and, for non-ASCII text, one ``translate`` of each character's first
byte to its script; each message adds ``MESSAGE_OVERHEAD`` tokens.
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
LONG_WORD = 12  # a letter run longer than this is priced by its length (base64, random ids)
PUNCT_PER_WORD = 6  # a punctuation run is a word per this many marks (a BPE merges ~6 random marks a token)
SPACES_PER_TOKEN = 4  # runs of two or more whitespace characters (indents, blank lines, tables)
CJK_TOKENS = 1 / 1.5  # a Chinese character, and a non-ASCII character of any script not listed below
FOUR_BYTE_TOKENS = 2.5  # an emoji or other 4-byte character (cl100k: 2-4 tokens; 1.5 per CJK character)
#: Tokens per character of other scripts, by the first byte of its UTF-8 encoding (first, last): a
#: block of 64 code points for a 2-byte character, of 4,096 for a 3-byte one. Measured on tickets in
#: each script against cl100k, the higher of two public BPEs on every one (tests/data/tokens_scripts.toml);
#: the scripts named "not measured" are priced as a BPE that does not know them bills (~2 a character).
SCRIPT_TOKENS: tuple[tuple[int, int, float], ...] = (
    (0xCC, 0xCD, 1.25),  # U+0300-037F: combining diacritical marks (decomposed accents, stacked marks)
    (0xCE, 0xCF, 1.0),  # U+0380-03FF: Greek
    (0xD0, 0xD4, 0.55),  # U+0400-053F: Cyrillic
    (0xD5, 0xD5, 2.0),  # U+0540-057F: Armenian
    (0xD6, 0xD7, 1.05),  # U+0580-05FF: Hebrew
    (0xD8, 0xDB, 0.8),  # U+0600-06FF: Arabic, Persian, Urdu
    (0xDC, 0xDF, 2.0),  # U+0700-07FF: Syriac, Thaana, N'Ko (not measured)
    (0xE0, 0xE0, 1.3),  # U+0800-0FFF: Devanagari, Bengali, Tamil and the other Indic scripts (Thai: below)
    (0xE1, 0xE1, 2.0),  # U+1000-1FFF: Georgian, Khmer; Myanmar, Ethiopic (not measured); jamo, Vietnamese: below
    (0xE2, 0xE2, 2.0),  # U+2000-2FFF: arrows, math, box drawing, shapes, dingbats (✅ ★ ≤ →); the rest: below
    (0xEA, 0xED, 1.15),  # U+A000-D7FF: Hangul syllables (Korean)
    (0xF0, 0xF4, FOUR_BYTE_TOKENS),  # U+10000 and up: emoji and the like
)
#: Blocks of 64 code points inside those, by the first two bytes of their characters' encoding.
SUB_BLOCK_TOKENS: tuple[tuple[bytes, float], ...] = (
    *((bytes((0xE0, second)), 1.0) for second in (0xB8, 0xB9)),  # U+0E00-0E7F: Thai
    *((bytes((0xE1, second)), 3.0) for second in range(0x84, 0x88)),  # U+1100-11FF: Hangul jamo (decomposed Korean)
    *((bytes((0xE1, second)), CJK_TOKENS) for second in range(0xB8, 0xBC)),  # U+1E00-1EFF: Latin (Vietnamese)
    *((bytes((0xE2, second)), 1.0) for second in (0x80, 0x81)),  # U+2000-207F: dashes, curly quotes, bullets
    *((bytes((0xE2, second)), 2.5) for second in (0x82, 0x84, 0x85)),  # currency, letterlike (℃ №), number forms
    *((bytes((0xE2, second)), 3.0) for second in range(0xBA, 0xC0)),  # U+2E80-2FFF: CJK and Kangxi radicals
)
_NOT_LEAD = bytes(range(0xC0))  # ASCII and UTF-8 continuation bytes: no character of their own
#: The script of a non-ASCII character the rule does not list (Chinese, kana, full-width punctuation,
#: accented Latin): :data:`CJK_TOKENS` each.
CJK_SCRIPT = "cjk"
#: Each script of :data:`SCRIPT_TOKENS`, named by its lead bytes: (name, first, last, rate).
_RANGES = tuple((f"{first:02x}-{last:02x}", first, last, rate) for first, last, rate in SCRIPT_TOKENS)


def _script_of(lead: int) -> tuple[str, float]:
    """The script of the characters whose UTF-8 starts with ``lead``, and its rate."""
    return next(((name, rate) for name, first, last, rate in _RANGES if first <= lead <= last),
                (CJK_SCRIPT, CJK_TOKENS))


def _sub_scripts() -> tuple[tuple[str, tuple[bytes, ...], float, str, float], ...]:
    """The scripts of :data:`SUB_BLOCK_TOKENS`, one per lead byte and rate: (name, their two-byte
    prefixes, rate, and the script and rate the lead byte alone would say)."""
    keys = dict.fromkeys((prefix[0], rate) for prefix, rate in SUB_BLOCK_TOKENS)
    return tuple((f"{lead:02x}:{rate:.3g}", tuple(p for p, r in SUB_BLOCK_TOKENS if (p[0], r) == (lead, rate)),
                  rate, *_script_of(lead)) for lead, rate in keys)


_SUBS = _sub_scripts()


def _sub_prefixes() -> dict[str, tuple[tuple[bytes, float, float], ...]]:
    """Per script of :data:`SCRIPT_TOKENS`, its sub-blocks in :data:`SUB_BLOCK_TOKENS` order:
    (two-byte prefix, the sub-block's rate, the script's rate)."""
    found: dict[str, list[tuple[bytes, float, float]]] = {}
    for prefix, rate in SUB_BLOCK_TOKENS:
        script, script_rate = _script_of(prefix[0])
        found.setdefault(script, []).append((prefix, rate, script_rate))
    return {script: tuple(blocks) for script, blocks in found.items()}


_SUB_PREFIXES = _sub_prefixes()
_LETTER = {name: ord("a") + i for i, (name, *_) in enumerate(_RANGES)} | {CJK_SCRIPT: ord("z")}
_LETTER_OF_LEAD = bytes(_LETTER[_script_of(byte)[0]] for byte in range(256))
_RATE = {name: rate for name, _, _, rate in _RANGES} | {CJK_SCRIPT: CJK_TOKENS}


@lru_cache(maxsize=512)  # system prompts repeat across a run's requests
def count_text_tokens(text: str) -> int:
    """Tokens of one text by the rule of thumb (0 for an empty text)."""
    if not text:
        return 0
    raw = text.encode("utf-8", "replace")
    other = 0.0 if text.isascii() else non_ascii_tokens(raw)
    letters = _LETTERS.findall(raw)
    long_letters = [len(word) for word in letters if len(word) > LONG_WORD]
    punct = sum(max(1.0, len(run) / PUNCT_PER_WORD) for run in _PUNCT.findall(raw))
    words = len(letters) - len(long_letters) + punct
    digit_groups = sum((len(run) + 2) // 3 for run in _DIGITS.findall(raw))
    spaces = sum(len(run) for run in _SPACES.findall(raw)) / SPACES_PER_TOKEN
    return math.ceil(other + words / 0.75 + digit_groups + sum(long_letters) / 2 + spaces)


def non_ascii_tokens(raw: bytes) -> float:
    """Tokens of the non-ASCII characters of a UTF-8 text, each at its script's rate."""
    letters = raw.translate(_LETTER_OF_LEAD, _NOT_LEAD)  # one letter per non-ASCII character: its script
    tokens = len(letters) * CJK_TOKENS
    if letters.count(_LETTER[CJK_SCRIPT]) == len(letters):  # Chinese text, full-width punctuation
        return tokens
    for name, letter in _LETTER.items():  # each script beyond the CJK rate, each sub-block beyond its script's
        if name != CJK_SCRIPT and (count := letters.count(letter)):
            tokens += count * (_RATE[name] - CJK_TOKENS) + sum(
                raw.count(prefix) * (rate - lead_rate) for prefix, rate, lead_rate in _SUB_PREFIXES.get(name, ()))
    return tokens


def tokens_by_script(raw: bytes) -> dict[str, float]:
    """:func:`non_ascii_tokens` by script (:data:`CJK_SCRIPT`, a range of :data:`SCRIPT_TOKENS` or a
    block of :data:`SUB_BLOCK_TOKENS`): only the scripts present (the budget learns a rate for each)."""
    return _by_script(raw, raw.translate(_LETTER_OF_LEAD, _NOT_LEAD))


def _by_script(raw: bytes, letters: bytes) -> dict[str, float]:
    parts = {name: count * _RATE[name] for name, letter in _LETTER.items() if (count := letters.count(letter))}
    for name, prefixes, rate, lead, lead_rate in _SUBS:
        if lead in parts and (inside := sum(raw.count(prefix) for prefix in prefixes)):
            parts[lead] -= inside * lead_rate
            parts[name] = inside * rate
    return {name: tokens for name, tokens in parts.items() if tokens > 1e-9}


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
