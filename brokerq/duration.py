"""Human durations for config: ``500ms``, ``5s``, ``1m``, ``24h``, ``1h30m`` or a bare number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Return seconds for a duration given as number, timedelta or string; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 5s, 1m, 24h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError("empty duration")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text):
                raise ValueError(
                    f"invalid duration {value!r}: use a number with a unit: 500ms, 5s, 1m, 24h"
                ) from None
    else:
        raise ValueError(
            f"expected a duration such as 500ms, 5s, 1m, 24h, got {type(value).__name__}"
        )
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds as float, parsed from a human duration."""


def _count(value: object) -> object:
    if isinstance(value, bool):  # YAML's true is not 1 here
        raise ValueError("expected a whole number, not true/false")
    return value


Count = Annotated[int, BeforeValidator(_count)]
"""A pydantic field type: a whole number (``true`` / ``false`` refused, "8" from ${VAR} taken)."""
