"""Pure formatting for the pages: ages, times, payload previews, masked headers.

Nothing here produces markup: templates escape everything they print (Jinja2 autoescape), so
a payload such as ``<script>`` is shown as text. Payloads are cut to a byte budget first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "••••••"

SECRET_NAME = re.compile(
    r"authorization|passw(or)?d|passwd|secret|token|api[-_]?key|cookie|credential|signature|sasl",
    re.IGNORECASE,
)
"""Header names whose values are never shown."""

_URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)


def mask_value(name: str, value: str) -> str:
    """``value`` unless ``name`` looks secret or ``value`` is a URL carrying a password."""
    if SECRET_NAME.search(name):
        return MASK
    if _URL_USERINFO.match(value):
        parts = urlsplit(value)
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def mask_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers sorted by name, secret-looking values masked (see ``SECRET_NAME``)."""
    return [(k, mask_value(k, str(v))) for k, v in sorted(headers.items())]


@dataclass(frozen=True, slots=True)
class Preview:
    """A payload cut to a byte budget: ``text`` (UTF-8, undecodable bytes replaced),
    ``size`` (bytes in the whole payload) and ``cut`` (bytes not shown)."""

    text: str
    size: int
    cut: int
    binary: bool


def preview(value: bytes | str | None, limit: int) -> Preview:
    """The first ``limit`` bytes of ``value`` as text; never more, whatever the payload."""
    raw = value.encode() if isinstance(value, str) else (value or b"")
    head = raw[: max(0, limit)]
    text = head.decode("utf-8", errors="replace")
    binary = "\ufffd" in text or any(ord(c) < 32 and c not in "\t\r\n" for c in text)
    if binary and "\ufffd" in text and len(head) == len(raw) == 0:
        binary = False
    return Preview(text=text, size=len(raw), cut=len(raw) - len(head), binary=binary)


def age(seconds: float | None) -> str:
    """A short human duration: ``42s``, ``3m05s``, ``2h10m``, ``4d03h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def since(ts: float | None, now: float | None = None) -> str:
    """``age`` of a unix time in the past (``—`` when unknown)."""
    if ts is None:
        return "—"
    return age((time.time() if now is None else now) - ts)


def utc(ts: float | datetime | None) -> str:
    """``2026-12-01 00:40:12 UTC`` from a unix time or aware datetime (``—`` when unknown)."""
    moment = _moment(ts)
    return (
        "—" if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def local(ts: float | datetime | None) -> str:
    """The same moment in the server's local time zone, with its abbreviation."""
    moment = _moment(ts)
    return "—" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def moment(ts: float | datetime | None) -> str:
    """UTC, plus the server's local time when its zone is not UTC (``—`` when unknown)."""
    at = _moment(ts)
    if at is None:
        return "—"
    here = at.astimezone()
    if here.utcoffset() == timedelta(0):
        return utc(at)
    return f"{local(at)} · {utc(at)}"


def _moment(ts: float | datetime | None) -> datetime | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    if not ts:
        return None
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


def count(value: Any) -> str:
    """Thousands separated count, ``—`` for None."""
    if value is None:
        return "—"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


_TIME_KEY = re.compile(r"(^|_|\s)(until|at|time|due|since)$", re.IGNORECASE)


def detail(name: str, value: Any) -> str:
    """One value of ``JobInfo.details`` as text: unix times under a time-like key (``*_at``,
    ``*until``) as ``moment``, None as ``—``, booleans as yes/no, secrets masked."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and _TIME_KEY.search(name) and value > 1e8:
        return moment(float(value))
    return mask_value(name, str(value))


FILTERS = {
    "age": age,
    "since": since,
    "utc": utc,
    "local": local,
    "moment": moment,
    "count": count,
}
