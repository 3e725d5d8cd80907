"""Secrets in the forms a server may echo them are masked; URLs are shown without credentials."""

from __future__ import annotations

import base64

import pytest

from pipeline.redact import MASK, Redactor, url_secrets, without_credentials


@pytest.mark.parametrize(("url", "shown"), [
    ("https://robot:s3cr%23t@gw.example/api/paas/v4", "https://gw.example/api/paas/v4"),
    ("http://only-user@127.0.0.1:8080/v4", "http://127.0.0.1:8080/v4"),
    ("https://open.bigmodel.cn/api/paas/v4", "https://open.bigmodel.cn/api/paas/v4"),
    ("http://a:b@c@host/x", "http://host/x"),
    ("robot:s3cret@127.0.0.1:8080/v4", "127.0.0.1:8080/v4"),  # no scheme: still no credentials shown
    ("127.0.0.1:8080/v4/mail@example", "127.0.0.1:8080/v4/mail@example"),  # an @ in the path is no user
])
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert without_credentials(url) == shown


def test_every_echoed_form_of_the_secrets_is_masked() -> None:
    key = "sk-0123456789/abc.DEF"
    url = "https://robot:s3cr%23t-pass@gw.example/v4"
    redactor = Redactor([key, *url_secrets(url)])
    basic = base64.b64encode(b"robot:s3cr#t-pass").decode()
    echoed = (f"Bearer {key} | escaped {key.replace('/', chr(92) + '/')} | raw s3cr%23t-pass | "
              f"decoded s3cr#t-pass | Basic {basic} | user robot")
    masked = redactor.text(echoed)
    assert masked == (f"Bearer {MASK} | escaped {MASK} | raw {MASK} | decoded {MASK} | Basic {MASK} | user robot")
    assert redactor.raw(echoed.encode()) == masked.encode()


def test_nothing_to_mask_without_secrets() -> None:
    redactor = Redactor([None, "", "ab"])  # too short to mask without masking ordinary words
    assert not redactor and redactor.text("ab Bearer x") == "ab Bearer x"
    assert url_secrets("https://gw.example/v4") == [] and url_secrets(None) == []
