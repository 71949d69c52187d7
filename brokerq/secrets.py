"""Keep passwords out of logs, errors, CLI output, stats, metrics and dashboards.

Every secret brokerq is configured with (``password``, ``password_file`` contents, SASL
passwords, credentials inside URLs) is registered here when its config is validated; whatever
brokerq prints or logs goes through ``mask``, which replaces each registered secret and the
password part of any ``scheme://user:password@host`` URL with ``***``::

    >>> mask_url("rediss://app:s3cret@cache:6380/0")
    'rediss://app:***@cache:6380/0'

``MaskingFilter`` does the same for log records; the CLI installs it on its handler, and
applications that configure logging themselves can add it too. Other modules (metrics, the
dashboard) call ``mask`` on any text that may hold configuration.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

__all__ = ["MASK", "MaskingFilter", "mask", "mask_url", "read_secret_file", "register"]

MASK = "***"

# scheme://user:password@ (the password is masked) or scheme://token@ (a lone user-info part
# is often a token: masked whole)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
# password=..., ?token=..., "secret": ... -- the value is masked
_PARAM = re.compile(
    r"(?i)(?P<name>[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|credentials?))"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^&\s;,'\"]+)"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(secret: str | None) -> None:
    """Remember ``secret`` so that ``mask`` hides it from now on (empty values are ignored)."""
    global _pattern
    if not secret or secret == MASK:
        return
    with _lock:
        if secret in _secrets:
            return
        _secrets.add(secret)
        # longest first, so a secret containing another is masked whole
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _ = m.group("userinfo").partition(":")
    return f"{m.group('scheme')}{user}:{MASK}@" if sep else f"{m.group('scheme')}{MASK}@"


def mask_url(url: str) -> str:
    """``url`` (or any text holding URLs) with the credentials of every URL masked:
    ``user:password@`` keeps the user, a lone ``token@`` is masked whole, and the values of
    ``password=``-like query parameters too."""
    if "@" in url:
        url = _URL_USERINFO.sub(_userinfo, url)
    return _PARAM.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", url)


def mask(text: str) -> str:
    """``text`` with every registered secret, URL credential and ``password=`` value masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return mask_url(text)


def read_secret_file(path: str) -> str:
    """The secret stored in ``path`` (one line; surrounding whitespace dropped), registered.

    Raises ValueError naming the file (never its content) when it cannot be read or is empty.
    """
    try:
        secret = Path(path).read_text().strip()
    except OSError as e:
        raise ValueError(f"cannot read password_file {path!r}: {e.strerror or e}") from None
    if not secret:
        raise ValueError(f"password_file {path!r} is empty")
    register(secret)
    return secret


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask(text)
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True
