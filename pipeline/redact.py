"""Keep secrets out of everything the pipeline stores or prints.

The API key is only ever put into the Authorization header, but a server can send it back: a
gateway that echoes request headers in its error body would put the key into ``_error_message``,
the journal and stderr. Credentials written into an endpoint URL (``https://user:key@host/...``)
would land in the summary and on the console. So every answer and error that crosses the client
boundary is scrubbed of the configured secrets in every form they travel in (as given,
percent-decoded, as the Base64 of ``user:password`` that HTTP Basic auth sends, and with ``/``
written ``\\/`` as some JSON encoders do), and an endpoint URL is only ever shown without
its credentials.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter strings (a user name like "me") would mask ordinary words


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` removed (the URL itself when it has none or is unparsable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2] if "@" in url else url
    if "@" not in parts.netloc:
        # no scheme: urlsplit sees no host, but "user:pw@host/…" still carries credentials
        return url.rpartition("@")[2] if not parts.netloc and "@" in url.split("/", 1)[0] else url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_secrets(url: str | None) -> list[str]:
    """The credentials written into ``url``, in the forms a server may echo them."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    user, password = parts.username or "", parts.password or ""
    found = [password, unquote(password)] if password else []
    if user or password:
        basic = f"{unquote(user)}:{unquote(password)}"
        found += [basic, base64.b64encode(basic.encode()).decode()]
    return found


class Redactor:
    """Replaces each known secret by :data:`MASK`; a no-op when there is none."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        unique |= {s.replace("/", "\\/") for s in unique if "/" in s}  # as some JSON encoders write it
        self._secrets = sorted(unique, key=len, reverse=True)  # longest first: a key inside "user:key"
        self._raw = [s.encode() for s in self._secrets]

    @classmethod
    def for_endpoint(cls, base_url: str | None, api_key: str | None) -> Redactor:
        """Secrets of one endpoint: its key and the credentials in its URL."""
        return cls([api_key, *url_secrets(base_url)])

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def raw(self, value: bytes) -> bytes:
        for secret in self._raw:
            if secret in value:
                value = value.replace(secret, MASK.encode())
        return value
