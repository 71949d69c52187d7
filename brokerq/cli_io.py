"""Command-line input and output for ``brokerq.cli``: VALUE arguments (text, ``-`` for stdin,
``@FILE``), ``--in`` delays, ``--header`` pairs, and dead letters rendered as JSON.

Every bad input is a ConfigError naming the option and the rule (one line, exit 3).
"""

from __future__ import annotations

import base64
import sys
from datetime import datetime, timezone
from typing import Any

from brokerq.broker import DeadLetter
from brokerq.duration import parse_duration
from brokerq.errors import ConfigError


def headers(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--header NAME=VALUE`` pairs as a dict."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"header {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def read_value(value: str) -> bytes:
    """A VALUE argument: ``-`` reads stdin, ``@path`` reads a file, anything else is itself."""
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@") and len(value) > 1:
        try:
            with open(value[1:], "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"VALUE {value!r}: cannot read {value[1:]!r}: {e.strerror}") from e
    return value.encode()


LATEST_DUE = datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp()


def delay_seconds(after: str) -> float:
    """``--in`` as seconds: a non-negative duration whose due time a datetime can express."""
    if after.strip().startswith("-"):
        raise ConfigError(f"--in {after}: a delay cannot be negative (to run now, use push)")
    try:
        seconds = parse_duration(after)
    except ValueError as e:
        raise ConfigError(f"--in {after}: {e}") from None
    if seconds > LATEST_DUE - datetime.now(timezone.utc).timestamp():
        raise ConfigError(f"--in {after}: the due time would be after the year 9999")
    return seconds


def dead_json(d: DeadLetter) -> dict[str, Any]:
    """One dead letter as JSON: the value as text when it is UTF-8, else base64."""
    error_type = getattr(d.error, "type", None) or str(d.error).partition(":")[0]
    out: dict[str, Any] = {
        "ref": d.ref or d.message.id,
        "id": d.message.id,
        "attempt": d.message.attempt,
        "error": str(d.error),
        "error_type": error_type,
        "traceback": d.traceback or getattr(d.error, "traceback", ""),
        "failed_at": d.failed_at,
        "created_at": d.message.created_at,
        "key": None if d.message.key is None else d.message.key.decode(errors="replace"),
        "headers": dict(d.message.headers),
    }
    return out | value_json(d.message.value)


def value_json(value: bytes) -> dict[str, str]:
    """``{"value": text}`` when ``value`` is UTF-8, else ``{"value_base64": ...}``."""
    try:
        return {"value": value.decode()}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode()}
