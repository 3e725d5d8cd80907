"""Small wording helpers for messages people read (pure)."""

from __future__ import annotations


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``0 rows`` (``words``: an irregular plural)."""
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"
