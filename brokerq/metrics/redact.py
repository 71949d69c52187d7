"""Keep secrets out of anything the exporter serves: label values, /readyz error text.

Broker errors often quote the endpoint they failed on, and endpoints can carry credentials
(``redis://user:secret@host:6379``, ``amqp://...``, ``?password=...``). ``redact`` masks the
user-info part of every URL and the value of every ``password=``-like parameter.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_PARAM = re.compile(
    r"(?i)(?P<name>[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|credentials?))"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^&\s;,'\"]+)"
)


def _mask_userinfo(m: re.Match[str]) -> str:
    user, sep, _ = m.group("userinfo").partition(":")
    if sep:
        return f"{m.group('scheme')}{user}:{MASK}@"
    return f"{m.group('scheme')}{MASK}@"  # a lone user-info part is often a token


def redact(text: str) -> str:
    """``text`` with URL credentials and ``password=...``-style values replaced by ``***``.

    >>> redact("redis://app:s3cret@10.0.0.1:6379/0 refused")
    'redis://app:***@10.0.0.1:6379/0 refused'
    """
    if "@" in text:
        text = _USERINFO.sub(_mask_userinfo, text)
    return _PARAM.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)
