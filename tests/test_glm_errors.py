from __future__ import annotations

import pytest

from pipeline.glm.errors import (
    FatalError,
    RateLimited,
    RowError,
    TransientError,
    classify,
    error_from_body,
    is_retryable,
)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (429, "1113", FatalError),  # no balance arrives as 429 and must not be retried
        (429, "1302", RateLimited),
        (429, "1303", RateLimited),
        (429, "1305", TransientError),
        (429, "1312", TransientError),
        (401, "1002", FatalError),
        (400, "1214", FatalError),
        (400, "1210", FatalError),
        (400, "1301", RowError),
        (400, "1261", RowError),
        (500, "500", TransientError),
        (503, None, TransientError),
        (404, "1211", FatalError),
    ],
)
def test_classification_by_business_code(status: int, code: str | None, cls: type) -> None:
    error = classify(status, code, "m")
    assert type(error) is cls


def test_only_transient_errors_are_retryable() -> None:
    assert is_retryable(classify(429, "1302", "m"))
    assert is_retryable(classify(500, None, "m"))
    assert not is_retryable(classify(429, "1113", "m"))
    assert not is_retryable(classify(400, "1301", "m"))
    assert not is_retryable(ValueError("a bug"))


def test_error_body_with_string_code_and_request_id() -> None:
    body = b'{"error":{"code":"1113","message":"Insufficient balance"},"request_id":"rq-1"}'
    error = error_from_body(429, body)
    assert isinstance(error, FatalError) and error.code == "1113" and error.request_id == "rq-1"
    assert "recharge" in error.hint
    garbage = error_from_body(502, b"<html>bad gateway</html>")
    assert isinstance(garbage, TransientError) and garbage.code == "502"
