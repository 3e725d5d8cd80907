"""Name-based roles: which simple rule fills a field (``booking_id`` → id, ``revenue`` → amount).

A role is decided once per schema position when the schema is compiled; an empty role means
"typed placeholder".
"""

from __future__ import annotations

import re
from functools import lru_cache

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")

_ID_QUALIFIERS = frozenset({
    "order", "account", "booking", "ticket", "confirmation", "claim", "policy", "invoice", "tracking",
    "transaction", "reservation", "customer", "member", "flight", "case", "reference", "ref", "pnr",
    "shipment", "contract",
})  # fmt: skip
_ID_SUFFIXES = frozenset({"id", "number", "no", "num", "code", "ref", "reference"})
_AMOUNT_WORDS = frozenset({
    "amount", "revenue", "revenues", "income", "profit", "profits", "sales", "cost", "costs", "price",
    "charge", "fee", "fees", "total", "balance", "payment", "expense", "expenses", "earnings", "ebitda",
    "assets", "cash", "refund", "turnover", "spend", "spending", "budget",
})  # fmt: skip
_PERCENT_WORDS = frozenset({
    "growth", "yoy", "rate", "percent", "percentage", "pct", "margin", "ratio", "change", "increase",
})  # fmt: skip
_SUMMARY_WORDS = frozenset({
    "summary", "abstract", "overview", "gist", "synopsis", "description", "title", "headline", "brief",
})  # fmt: skip
_EXCERPT_WORDS = frozenset({
    "risk", "reason", "highlight", "point", "finding", "step", "action", "evidence", "quote", "excerpt",
    "argument", "factor", "concern", "complaint", "request", "question", "answer", "note", "comment",
})  # fmt: skip
_COMPANY_WORDS = frozenset({
    "company", "organization", "organisation", "org", "issuer", "firm", "corporation", "enterprise",
})  # fmt: skip
_PERSON_WORDS = frozenset({
    "name", "full", "first", "last", "customer", "person", "contact", "client", "user", "agent", "caller",
    "passenger", "holder",
})  # fmt: skip
_DATE_WORDS = frozenset({"date", "day", "deadline", "timestamp", "time", "datetime"})
_PERIOD_WORDS = frozenset({"period", "quarter", "fiscal", "fy", "year"})
_LEXICON_WORDS = frozenset({
    "urgent", "escalate", "escalation", "refund", "cancel", "cancellation", "complaint", "negative",
    "positive", "angry",
})  # fmt: skip


@lru_cache(maxsize=4096)
def name_tokens(name: str) -> tuple[str, ...]:
    """``bookingConfirmationNo`` / ``booking_confirmation_no`` → ``('booking', 'confirmation', 'no')``."""
    spaced = _CAMEL.sub("_", name)
    return tuple(t for t in _NON_ALNUM.split(spaced.lower()) if t)


@lru_cache(maxsize=4096)
def role_for(name: str, kind: str, fmt: str) -> str:
    """The fill role of a field, from its name, kind and format."""
    tokens = name_tokens(name)
    if kind in ("integer", "number"):
        return _numeric_role(tokens)
    if kind == "boolean":
        return next((f"flag:{t}" for t in tokens if t in _LEXICON_WORDS), "")
    if kind == "array":
        return ""
    return _format_role(fmt) or _string_role(tokens)


def _format_role(fmt: str) -> str:
    return {
        "date": "date", "date-time": "datetime", "email": "email", "uri": "uri", "url": "uri",
        "uuid": "uuid", "time": "time",
    }.get(fmt, "")  # fmt: skip


def _numeric_role(tokens: tuple[str, ...]) -> str:
    words = set(tokens)
    kind = ""
    if words & {"revenue", "revenues", "sales", "turnover"}:
        kind = "revenue"
    elif words & {"profit", "profits", "income", "earnings"}:
        kind = "profit"
    if words & _PERCENT_WORDS:
        return f"percent:{kind}" if kind else "percent"
    if kind:
        return f"amount:{kind}"
    if words & _AMOUNT_WORDS:
        return "amount"
    if words & {"year", "fy"}:
        return "year"
    return ""


def _string_role(tokens: tuple[str, ...]) -> str:
    words = set(tokens)
    last = tokens[-1] if tokens else ""
    checks: tuple[tuple[bool, str], ...] = (
        ("email" in words or "mail" in words, "email"),
        (bool(words & {"phone", "tel", "telephone", "mobile"}), "phone"),
        ("card" in words and last in _ID_SUFFIXES | {"card"}, "card"),
        (last in _ID_SUFFIXES and (bool(words & _ID_QUALIFIERS) or len(tokens) == 1), "id"),
        ("currency" in words, "currency"),
        (bool(words & {"language", "lang", "locale"}), "language"),
        (bool(words & {"unit", "scale"}), "unit"),
        (bool(words & _DATE_WORDS), "date"),
        (bool(words & _PERIOD_WORDS), "period"),
        (bool(words & _SUMMARY_WORDS), "summary"),
        (bool(words & _COMPANY_WORDS), "company"),
        (("name" in words and words <= _PERSON_WORDS) or tokens in (("person",), ("contact",)), "person"),
        (bool(words & _AMOUNT_WORDS), _numeric_role(tokens)),
        (bool(words & _PERCENT_WORDS), "percent"),
        (bool(words & _EXCERPT_WORDS), "excerpt"),
    )
    return next((role for hit, role in checks if hit), "")
