"""Keyword lists that make an enum choice "obvious" (sentiment, urgency, ticket category).

``keyword_score(lower_text, key)`` counts keyword occurrences; negative cues weigh double so that
"thanks" at the end of an angry ticket does not make it positive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

LEXICON: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "negative": ("angry", "terrible", "awful", "worst", "horrible", "disappointed", "frustrat",
                 "unacceptable", "ridiculous", "complain", "useless", "annoy", "upset", "furious",
                 "投诉", "差", "愤怒", "不满", "失望", "糟糕", "垃圾", "生气"),
    "positive": ("great", "thank", "excellent", "happy", "love", "awesome", "perfect", "appreciate",
                 "satisf", "满意", "感谢", "谢谢", "好评", "不错", "很好"),
    "urgent": ("urgent", "asap", "immediately", "emergency", "right now", "紧急", "立即", "马上", "尽快"),
    "refund": ("refund", "money back", "reimburs", "退款", "退钱"),
    "billing": ("bill", "charge", "invoice", "payment", "paid", "扣费", "账单", "付款", "收费"),
    "shipping": ("ship", "deliver", "package", "parcel", "courier", "物流", "快递", "发货", "配送"),
    "account": ("password", "login", "log in", "sign in", "username", "登录", "密码", "账号"),
    "cancel": ("cancel", "取消", "退订"),
    "technical": ("error", "bug", "crash", "not working", "broken", "failed", "故障", "报错", "崩溃", "无法"),
})  # fmt: skip

#: Enum values and field-name words that mean the same as a lexicon key.
SYNONYMS: Mapping[str, str] = MappingProxyType({
    "high": "urgent", "critical": "urgent", "urgency": "urgent", "p1": "urgent", "escalate": "negative",
    "escalation": "negative", "complaint": "negative", "angry": "negative", "delivery": "shipping",
    "logistics": "shipping", "payment": "billing", "charges": "billing", "login": "account",
    "tech": "technical", "bug": "technical", "cancellation": "cancel", "refunds": "refund",
})  # fmt: skip

_WEIGHTS: Mapping[str, int] = MappingProxyType({"negative": 2})


def lexicon_key(word: str) -> str | None:
    """The lexicon key a word stands for, if any."""
    word = word.lower()
    key = SYNONYMS.get(word, word)
    return key if key in LEXICON else None


@lru_cache(maxsize=4096)
def value_keys(value: str) -> tuple[str, ...]:
    """Lexicon keys an enum value stands for (``technical_issue`` → ``('technical',)``)."""
    words = (w for w in re.split(r"[^a-z0-9]+", value.lower()) if w)
    return tuple(dict.fromkeys(key for w in words if (key := lexicon_key(w))))


def keyword_score(lower_text: str, key: str) -> int:
    """Weighted count of the key's keywords in an already lower-cased text (0 for unknown keys)."""
    words = LEXICON.get(key, ())
    return _WEIGHTS.get(key, 1) * sum(lower_text.count(word) for word in words)
