"""Turning ``delay`` / ``at`` arguments into due times: one rule for every backend.

A negative or non-finite delay and a time in the past are ValueErrors; ``at(now)`` is allowed.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

# ``at(datetime.now())`` is meant as "now", not as an error: allow this much clock slack.
PAST_GRACE = 1.0


def due_after(delay: float | timedelta) -> float:
    """Unix time ``delay`` seconds from now; ValueError for a negative or non-finite delay."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
    return time.time() + seconds


def due_at(when: datetime) -> float:
    """Unix time of ``when`` (aware, or naive local time); ValueError if it is in the past."""
    if not isinstance(when, datetime):
        raise TypeError(f"when must be a datetime, not {type(when).__name__}")
    due = when.timestamp()
    now = time.time()
    if due < now - PAST_GRACE:
        raise ValueError(f"time {when.isoformat()} is {now - due:.1f}s in the past")
    return max(due, now)
