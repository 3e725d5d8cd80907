"""Facts read from a document by simple rules: ids, amounts, currency, dates, periods, sentences.

``DocFacts`` computes each fact lazily and at most once per request, so a schema that asks for no
amounts never runs the amount rules. Rules look at the first ``SCAN_CHARS`` characters and anchor
on cheap literal finds (a keyword, ``%``, ``@``) before running a small regex at that spot: a regex
that scans a whole document for digits costs a hundred times an anchored one in CPython. Every rule
is deliberately shallow: the emulator is a test double, these rules only make its synthetic answers
look like they came from the document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TypeVar, cast

from emulator.lexicon import keyword_score, value_keys

SCAN_CHARS = 3000
_NUM = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?"
_ZH_UNIT = r"亿元|万元|千元|元|亿|万"
_EN_UNIT = r"million|billion|thousand|mn|bn"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MAX_ANCHORS = 40  # occurrences of one anchor examined at most

_ID_KEYWORDS: dict[str, tuple[str, ...]] = {
    "order": ("order", "订单"),
    "account": ("account", "acct", "账号", "账户"),
    "booking": ("booking", "reservation", "confirmation", "pnr", "预订", "确认"),
    "ticket": ("ticket", "case", "工单"),
    "claim": ("claim", "理赔"),
    "policy": ("policy", "保单"),
    "invoice": ("invoice", "发票"),
    "tracking": ("tracking", "shipment", "运单", "快递单"),
    "transaction": ("transaction", "交易"),
    "customer": ("customer", "member", "会员", "客户"),
    "flight": ("flight", "航班"),
}
_ID_ALIASES = {"reservation": "booking", "confirmation": "booking", "pnr": "booking", "case": "ticket",
               "shipment": "tracking", "member": "customer"}  # fmt: skip
_ID_AFTER = re.compile(
    r"[a-z]*\s*(?:number|no\.?|num|id|code|#|号|编号)?\s*(?:is|was|:|：|=|为|是)?\s*#?\s*"
    r"(?P<id>[a-z0-9][a-z0-9-]*\d[a-z0-9-]*|[a-z]{1,4}\s?\d{2,}[a-z0-9]*)",
    re.I,
)
_ID_GENERIC = re.compile(r"[A-Z]{1,4}-?\d{4,}[A-Z0-9]*|\d{6,}|#\d{3,}")
_EMAIL_AROUND = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}")
_CARD_ENDING = re.compile(r"(?:ending|ends)\s+(?:in|with)\s+(\d{4})")
_PHONE = re.compile(r"\+?\(?\d{2,4}\)?[ -]?\d{3,4}[ -]?\d{4}")
_PERCENT_END = re.compile(rf"({_NUM})\s?%$")
_GROWTH_END = re.compile(
    rf"(?:同比增长|同比\+|同比提升|同比|增长|增加|growth of|grew|increased|increase of|up)[^\d%-]{{0,12}}?({_NUM})\s?%$"
)
_AMOUNT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "revenue": ("营业收入", "营业总收入", "营收", "收入", "销售额", "revenue", "net sales", "sales", "turnover"),
    "profit": ("归母净利润", "净利润", "利润", "net income", "net profit", "net earnings", "profit", "earnings"),
}
_AMOUNT_AFTER = re.compile(rf"[^\d\n$¥￥€£]{{0,16}}?([$¥￥€£])?\s?({_NUM})\s*({_ZH_UNIT}|{_EN_UNIT})?", re.I)
_MONEY_AFTER_SYMBOL = re.compile(rf"\s?({_NUM})\s*({_EN_UNIT})?", re.I)
_MONEY_UNITS = ("亿元", "万元", "元", "美元", "dollars", "yuan", "usd", "cny", "rmb", "eur")
_NUMBER_END = re.compile(rf"({_NUM})\s*$")
_ANY_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_YEAR = re.compile(r"(?:19|20)\d\d")
_Q_AROUND = re.compile(r"(\d{4})\s*q([1-4])$")
_ZH_PERIOD_AFTER = re.compile(r"年(?:上半年|下半年|前三季度|第?[一二三四1-4]季度|年度|全年|中期)")
_FISCAL_AFTER = re.compile(r"(?:\s?year)?\s?'?(\d{4}|\d{2})(?!\d)")
_QUARTER_AROUND = re.compile(r"(first|second|third|fourth) quarter(?: of)?(?: fiscal)? (\d{4})")
_DATE_ISO = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_DATE_ZH_BEFORE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})$")
_DATE_EN = re.compile(r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2}),?\s+(\d{4})")
_COMPANY_ZH_BEFORE = re.compile(r"[\u4e00-\u9fff]{2,10}$")
_COMPANY_EN_BEFORE = re.compile(r"(?:[A-Z][\w&.-]*\s){1,4}$")
_COMPANY_SUFFIXES_ZH = ("股份有限公司", "有限责任公司", "有限公司", "集团")
_COMPANY_SUFFIXES_EN = ("Inc", "Corp", "Corporation", "Ltd", "LLC", "PLC", "plc", "Group", "Company", "Holdings")
_PERSON_AFTER = re.compile(r"(?:\s+is|:|：)?\s+([a-z]+(?:\s[a-z]+)?)", re.I)
_PERSON_ZH_AFTER = re.compile(r"[:：]?\s*([\u4e00-\u9fff]{2,4})")
_SENTENCE_END = re.compile(r"[。！？!?.;；\n]")
_LABEL = re.compile(r"^[^\s:：]{1,20}(?:\s?\[[^\]]{0,20}\])?\s?[:：]\s*")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CURRENCY_MARKERS = (
    ("CNY", ("¥", "￥", "元", "RMB", "CNY", "人民币")),
    ("USD", ("$", "USD", "dollar")),
    ("EUR", ("€", "EUR", "euro")),
    ("GBP", ("£", "GBP")),
)


_R = TypeVar("_R")


def memoized(method: Callable[[DocFacts], _R]) -> Callable[[DocFacts], _R]:
    """Compute a zero-argument fact once per document (array items ask for the same facts)."""
    name = method.__name__

    def wrapper(self: DocFacts) -> _R:
        if name not in self._memo:
            self._memo[name] = method(self)
        return cast(_R, self._memo[name])

    wrapper.__name__ = name
    wrapper.__doc__ = method.__doc__
    return wrapper


_LEADING_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def parse_number(text: str) -> float:
    """The number a matched span starts with: ``1,234.5`` → 1234.5, a dotted version ``2.2.1`` → 2.2.

    Never raises: a span without a leading number (no regex here should give one) is NaN, which
    every caller treats as "nothing found".
    """
    match = _LEADING_NUMBER.match(text.strip())
    return float(match.group(0).replace(",", "")) if match else math.nan


def find_all(text: str, needle: str, limit: int = _MAX_ANCHORS) -> Iterator[int]:
    """Positions of ``needle`` in ``text`` (at most ``limit``), by C-speed ``str.find``."""
    start = text.find(needle)
    while start >= 0 and limit > 0:
        yield start
        limit -= 1
        start = text.find(needle, start + 1)


def _first_index(text: str, markers: tuple[str, ...]) -> int:
    positions = [i for m in markers if (i := text.find(m)) >= 0]
    return min(positions) if positions else -1


class DocFacts:
    """Lazily computed facts about one document."""

    def __init__(self, text: str) -> None:
        self.text = text[:SCAN_CHARS]
        self._amounts: dict[str, tuple[float, str, str] | None] = {}
        self._hits: dict[str, int] = {}
        self._memo: dict[str, object] = {}
        self._keyword_hits: dict[str, int] = {}

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def language(self) -> str:
        sample = self.text[:400]
        return "zh" if len(_CJK.findall(sample)) * 4 > len(sample.replace(" ", "")) else "en"

    @cached_property
    def sentences(self) -> list[str]:
        """Up to 8 sentences (speaker labels such as ``Customer [turn 2]:`` removed)."""
        out: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self.text, 0, 2000):
            end = match.end()
            if match.group() == "." and end < len(self.text) and not self.text[end].isspace():
                continue  # 13.8, e.g., U.S.: not a sentence end
            sentence = _LABEL.sub("", self.text[start:end].strip()).strip()
            start = end
            if len(sentence) >= (6 if _CJK.search(sentence) else 12):
                out.append(sentence)
                if len(out) == 8:
                    break
        tail = _LABEL.sub("", self.text[start:2000].strip()).strip()
        return out if out or not tail else [tail]

    def value_score(self, value: str) -> int:
        """How strongly the document suggests an enum value: its keywords' hits plus literal mentions."""
        if value not in self._hits:
            score = sum(self.keyword_hits(key) for key in value_keys(value))
            if len(value) >= 4 and value.isascii():
                score += self.lower.count(value.lower())
            self._hits[value] = score
        return self._hits[value]

    def keyword_hits(self, key: str) -> int:
        if key not in self._keyword_hits:
            self._keyword_hits[key] = keyword_score(self.lower, key)
        return self._keyword_hits[key]

    def find_id(self, qualifiers: tuple[str, ...]) -> str | None:
        """An id after a keyword of one of the qualifiers (order, booking…), else an id-looking token."""
        hits: list[tuple[int, str]] = []
        for qualifier in qualifiers:
            for keyword in _ID_KEYWORDS.get(_ID_ALIASES.get(qualifier, qualifier), ()):
                hits += self._ids_after(keyword)
        if hits:
            return min(hits)[1]
        generic = _ID_GENERIC.search(self.text)
        return generic.group(0) if generic else None

    def _ids_after(self, keyword: str) -> list[tuple[int, str]]:
        for pos in find_all(self.lower, keyword, limit=5):
            match = _ID_AFTER.match(self.text, pos + len(keyword))
            if match:
                return [(pos, match.group("id"))]
        return []

    @memoized
    def find_card(self) -> str | None:
        ending = _CARD_ENDING.search(self.lower) if "end" in self.lower else None
        if ending:
            return ending.group(1)
        for match in _CARD.finditer(self.text):
            digits = re.sub(r"[ -]", "", match.group(0))
            if 13 <= len(digits) <= 19:
                return digits
        return None

    @memoized
    def find_email(self) -> str | None:
        at = self.text.find("@")
        if at < 0:
            return None
        match = _EMAIL_AROUND.search(self.text, max(0, at - 64), at + 256)
        return match.group(0) if match else None

    @memoized
    def find_phone(self) -> str | None:
        for match in _PHONE.finditer(self.text):
            digits = sum(c.isdigit() for c in match.group(0))
            if 10 <= digits <= 13:
                return match.group(0)
        return None

    @memoized
    def find_currency(self) -> str:
        """ISO code of the first currency marker; by language when there is none."""
        found = [(pos, code) for code, markers in _CURRENCY_MARKERS if (pos := _first_index(self.text, markers)) >= 0]
        if found:
            return min(found)[1]
        return "CNY" if self.language == "zh" else "USD"

    def find_amount(self, kind: str) -> tuple[float, str, str] | None:
        """(value as written, raw text, unit) of the first amount for ``kind`` (revenue/profit/any)."""
        if kind not in self._amounts:
            self._amounts[kind] = self._keyword_amount(kind) or self._money() or self._any_number()
        return self._amounts[kind]

    def _keyword_amount(self, kind: str) -> tuple[float, str, str] | None:
        best: tuple[int, tuple[float, str, str]] | None = None
        for keyword in _AMOUNT_KEYWORDS.get(kind, ()):
            for pos in find_all(self.lower, keyword, limit=3):
                if best is not None and pos >= best[0]:
                    break
                match = _AMOUNT_AFTER.match(self.text, pos + len(keyword))
                if match:
                    unit = match.group(3) or ""
                    raw = f"{match.group(1) or ''}{match.group(2)}{' ' if unit.isascii() and unit else ''}{unit}"
                    best = (pos, (parse_number(match.group(2)), raw, unit))
                    break
        return best[1] if best else None

    @memoized
    def _money(self) -> tuple[float, str, str] | None:
        candidates: list[tuple[int, tuple[float, str, str]]] = []
        for symbol in "$¥￥€£":
            for pos in find_all(self.text, symbol, limit=3):
                match = _MONEY_AFTER_SYMBOL.match(self.text, pos + 1)
                if match:
                    raw = (symbol + match.group(0)).strip()
                    candidates.append((pos, (parse_number(match.group(1)), raw, match.group(2) or "")))
                    break
        for unit in _MONEY_UNITS:
            for pos in find_all(self.lower, unit, limit=3):
                match = _NUMBER_END.search(self.text, max(0, pos - 24), pos)
                if match:
                    raw = self.text[match.start() : pos + len(unit)]
                    candidates.append(
                        (match.start(), (parse_number(match.group(1)), raw, self.text[pos : pos + len(unit)]))
                    )
                    break
        return min(candidates, key=lambda c: c[0])[1] if candidates else None

    @memoized
    def _any_number(self) -> tuple[float, str, str] | None:
        for match in _ANY_NUMBER.finditer(self.text):
            if not _YEAR.fullmatch(match.group(0)):
                return parse_number(match.group(0)), match.group(0), ""
        return None

    @memoized
    def find_unit(self) -> str | None:
        for scale in ("thousand", "million", "billion"):
            if f"in {scale}s" in self.lower:
                return scale
        amount = self.find_amount("")
        return amount[2] if amount and amount[2] else None

    def find_percent(self, growth: bool) -> float | None:
        """The first percentage (with ``growth``: the first one after a growth word, if any)."""
        first: float | None = None
        for pos in find_all(self.text, "%"):
            window_start = max(0, pos - 40)
            if growth:
                match = _GROWTH_END.search(self.lower, window_start, pos + 1)
                if match:
                    return parse_number(match.group(1))
            plain = _PERCENT_END.search(self.text, max(0, pos - 20), pos + 1)
            if plain and first is None:
                first = parse_number(plain.group(1))
                if not growth:
                    return first
        return first

    def find_percent_after(self, kind: str) -> float | None:
        """The first percentage within 80 characters after a ``kind`` keyword (revenue/profit)."""
        starts = [i for kw in _AMOUNT_KEYWORDS.get(kind, ()) if (i := self.lower.find(kw)) >= 0]
        if starts:
            start = min(starts)
            pct = self.text.find("%", start, start + 80)
            match = _PERCENT_END.search(self.text, max(start, pct - 20), pct + 1) if pct >= 0 else None
            if match:
                return parse_number(match.group(1))
        return self.find_percent(growth=True)

    @memoized
    def find_year(self) -> int | None:
        for match in _YEAR.finditer(self.text):
            before = self.text[match.start() - 1 : match.start()]
            after = self.text[match.end() : match.end() + 1]
            if not before.isdigit() and not after.isdigit():
                return int(match.group(0))
        return None

    @memoized
    def find_period(self) -> str | None:
        """``2024Q3``, ``2022年前三季度``, ``FY2019``… (earliest in the text), else the first year."""
        hits = [hit for hit in (self._quarter_q(), self._zh_period(), self._fiscal(), self._quarter_words()) if hit]
        if hits:
            return min(hits)[1]
        year = self.find_year()
        return str(year) if year else None

    def _quarter_q(self) -> tuple[int, str] | None:
        for pos in find_all(self.lower, "q"):
            match = _Q_AROUND.search(self.lower, max(0, pos - 6), pos + 2)
            if match:
                return match.start(), f"{match.group(1)}Q{match.group(2)}"
        return None

    def _zh_period(self) -> tuple[int, str] | None:
        for pos in find_all(self.text, "年"):
            if pos >= 4 and self.text[pos - 4 : pos].isdigit():
                match = _ZH_PERIOD_AFTER.match(self.text, pos)
                if match:
                    return pos - 4, self.text[pos - 4 : match.end()]
        return None

    def _fiscal(self) -> tuple[int, str] | None:
        for keyword in ("fiscal", "fy"):
            for pos in find_all(self.lower, keyword, limit=5):
                match = _FISCAL_AFTER.match(self.lower, pos + len(keyword))
                if match:
                    year = match.group(1)
                    return pos, f"FY{year if len(year) == 4 else '20' + year}"
        return None

    def _quarter_words(self) -> tuple[int, str] | None:
        for pos in find_all(self.lower, "quarter", limit=5):
            match = _QUARTER_AROUND.search(self.lower, max(0, pos - 8), pos + 30)
            if match:
                quarter = ("first", "second", "third", "fourth").index(match.group(1)) + 1
                return match.start(), f"{match.group(2)}Q{quarter}"
        return None

    @memoized
    def find_date(self) -> str | None:
        """The earliest full date (ISO, 2024年3月5日, March 5, 2024) as ``YYYY-MM-DD``."""
        hits: list[tuple[int, str]] = []
        iso = _DATE_ISO.search(self.text)
        if iso:
            hits.append((iso.start(), _iso(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))))
        for pos in find_all(self.text, "日", limit=10):
            zh = _DATE_ZH_BEFORE.search(self.text, max(0, pos - 12), pos)
            if zh:
                hits.append((zh.start(), _iso(int(zh.group(1)), int(zh.group(2)), int(zh.group(3)))))
                break
        en = _DATE_EN.search(self.lower)
        if en:
            month = _MONTHS.index(en.group(1)) + 1
            hits.append((en.start(), _iso(int(en.group(3)), month, int(en.group(2)))))
        valid = [hit for hit in hits if hit[1]]
        return min(valid)[1] if valid else None

    @memoized
    def find_company(self) -> str | None:
        hits: list[tuple[int, str]] = []
        for suffix in _COMPANY_SUFFIXES_ZH:
            for pos in find_all(self.text, suffix, limit=3):
                match = _COMPANY_ZH_BEFORE.search(self.text, max(0, pos - 10), pos)
                if match:
                    hits.append((match.start(), match.group(0) + suffix))
                    break
        for suffix in _COMPANY_SUFFIXES_EN:
            for pos in find_all(self.text, suffix, limit=3):
                end = pos + len(suffix)
                if end < len(self.text) and self.text[end].isalnum():
                    continue
                match = _COMPANY_EN_BEFORE.search(self.text, max(0, pos - 60), pos)
                if match:
                    hits.append((match.start(), (match.group(0) + suffix).strip()))
                    break
        return min(hits, key=lambda hit: (hit[0], -len(hit[1])))[1] if hits else None

    @memoized
    def find_person(self) -> str | None:
        for keyword, pattern in (("name", _PERSON_AFTER), ("我叫", _PERSON_ZH_AFTER), ("姓名", _PERSON_ZH_AFTER)):
            for pos in find_all(self.lower, keyword, limit=3):
                match = pattern.match(self.text, pos + len(keyword))
                if match:
                    return match.group(1).strip()
        return None


def _iso(year: int, month: int, day: int) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1900 <= year <= 2100):
        return ""
    return f"{year:04d}-{month:02d}-{day:02d}"
