"""GLM API errors, classified by the platform's business code (docs/glm_platform.md, errors), not the HTTP status.

::

    ApiError                        base: code, http_status, message, request_id
    ├── TransientError              worth retrying with backoff (5xx, 1234, 1305, 1312, network)
    │   └── RateLimited             1302 / 1303: also shrink the concurrency window
    ├── RowError                    this row can never succeed as sent (1301 → filtered, 1261 …)
    └── FatalError                  no request of this run can succeed: stop the run
                                    (1113 balance — arrives as HTTP 429 —, 1000–1004 auth,
                                     1110–1121 account, 1210–1215 parameters, 1211 model …)

``is_retryable`` is the one predicate tenacity is given.
"""

from __future__ import annotations

from typing import Any

import orjson

RATE_LIMIT_CODES = frozenset({"1302", "1303"})
TRANSIENT_CODES = frozenset({"500", "1230", "1231", "1234", "1305", "1312", "1120"})
FILTER_CODES = frozenset({"1301"})
ROW_CODES = frozenset({"1261", "1300"})
FATAL_HINTS = {
    "1113": "the account has no balance or resource package: recharge at bigmodel.cn, then rerun "
    "(answers so far are kept in the journal)",
    "1000": "authentication failed: check ZHIPUAI_API_KEY (or the Prefect Secret block)",
    "1001": "no Authorization header was sent: set ZHIPUAI_API_KEY",
    "1002": "the API key was rejected: check ZHIPUAI_API_KEY (or the Prefect Secret block)",
    "1003": "the token expired: check the API key and the machine clock",
    "1004": "authentication failed: check ZHIPUAI_API_KEY",
    "1211": "the model does not exist: check --model",
    "1304": "the daily call quota is used up: rerun tomorrow (the journal keeps finished rows)",
    "journal_write_failed": "answers committed before are kept; rerun once the journal can be written",
}


class ApiError(Exception):
    """An answer from the API that is not a usable completion."""

    def __init__(
        self, message: str, *, code: str, http_status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.message = message

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}, " if self.http_status else ""
        return f"{status}code {self.code}: {self.message}"


class TransientError(ApiError):
    """May succeed if sent again later."""


class RateLimited(TransientError):
    """The account's concurrency or frequency limit was hit."""


class RowError(ApiError):
    """This request can never succeed; the row ends ``failed`` (or ``filtered`` for 1301)."""

    @property
    def filtered(self) -> bool:
        return self.code in FILTER_CODES

    @property
    def judged_content(self) -> bool:
        """The platform judged this content (1301, 1261 …): final. An unknown 4xx (a wrong URL, a
        gateway's 404/413/422) is not, so a rerun after fixing the setting asks again."""
        return self.code in FILTER_CODES or self.code in ROW_CODES


class FatalError(ApiError):
    """No further request of this run can succeed."""

    @property
    def hint(self) -> str:
        return FATAL_HINTS.get(self.code, "the platform refused the request; check the settings")


def is_retryable(exc: BaseException) -> bool:
    """The single retry predicate: only transient API errors are retried."""
    return isinstance(exc, TransientError)


def classify(
    http_status: int, code: str | None, message: str, request_id: str | None = None
) -> ApiError:
    """Map a non-200 answer to its error class, by business code first, HTTP status second."""
    code = code or str(http_status)
    kwargs: dict[str, Any] = {"code": code, "http_status": http_status, "request_id": request_id}
    cls: type[ApiError]
    if code in RATE_LIMIT_CODES:
        cls = RateLimited
    elif code in TRANSIENT_CODES or http_status >= 500 or http_status in (408, 409):
        cls = TransientError
    elif code in FILTER_CODES or code in ROW_CODES:
        cls = RowError
    elif (code.isdigit() and 1000 <= int(code) <= 1399) or http_status in (401, 403):
        cls = FatalError
    elif http_status == 429:
        cls = RateLimited
    else:
        cls = RowError
    return cls(_one_line(message), **kwargs)


def error_from_body(http_status: int, body: bytes, request_id: str | None = None) -> ApiError:
    """Parse GLM's ``{"error": {"code": "…", "message": "…"}}`` (the code is a string)."""
    code: str | None = None
    message = body[:300].decode("utf-8", "replace") or f"HTTP {http_status}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            code = str(error["code"]) if error.get("code") is not None else None
            message = str(error.get("message") or message)
        request_id = str(parsed.get("request_id") or request_id or "") or None
    return classify(http_status, code, message, request_id)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
