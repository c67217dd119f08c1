"""Secrets out of everything dstrain writes or prints: credentials in URLs, and the values of known secrets.

A URL may carry a password (``https://user:pass@host/``) or a token in its
query (``?token=...``, a presigned ``X-Amz-Signature``); an HTTP error may
echo the request's headers, API key included.  ``redact`` removes both from
any text, and the log formatters, the error printer and every record that
holds a URL (config.json, manifest.json, .verified.json) pass through it.
"""
import logging
import os
import re
from typing import Set

REDACTED = "<redacted>"
#: Query parameters and environment variables whose values are secrets.
SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential", re.IGNORECASE)
#: Environment variables whose values are removed from any text: MDC_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY...
SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
#: Shorter values would be found inside ordinary words and numbers.
MIN_SECRET = 6
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")
_QUERY_ITEM = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")
_AUTH_HEADER = re.compile(r"\b(Bearer|Token|Basic)(\s+)[A-Za-z0-9._~+/=-]{" + str(MIN_SECRET) + ",}")


def redact_url(url: str) -> str:
    """``url`` without its user:password and without the values of secret-looking query parameters."""
    url = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", url)
    return _QUERY_ITEM.sub(
        lambda m: m.group(0) if not SECRET_NAME.search(m.group(2)) else f"{m.group(1)}{m.group(2)}={REDACTED}", url)


def redact(text: str) -> str:
    """``text`` with every URL redacted and every known secret's value replaced."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    for value in sorted(_secret_values(), key=len, reverse=True):  # longest first: one may contain another
        text = text.replace(value, REDACTED)
    return text


def _secret_values() -> Set[str]:
    return {value for name, value in os.environ.items() if SECRET_VARIABLE.search(name) and len(value) >= MIN_SECRET}


class RedactingFormatter(logging.Formatter):
    """A formatter whose output, traceback included, never holds a secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
