"""Which ticks to fire after downtime or a late wake-up (pure functions, no I/O).

``catch_up`` of a schedule decides what happens to ticks that passed while no scheduler of the
config was running (or while this one was stalled):

- ``latest``: one run, for the most recent missed tick;
- ``all``: a run for each missed tick, at most ``max_catch_up`` of them (the most recent);
- ``none``: no run for them at start-up. A scheduler that wakes late while running still fires
  the most recent tick: that is the tick it was waiting for, not a catch-up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from brokerq.schedule.spec import EPOCH, Schedule

_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
SCAN_LIMIT = 1_000_000
"""Cron ticks examined at most when counting missed ones (a minute cron: ~2 years)."""


@dataclass(frozen=True, slots=True)
class Missed:
    """Ticks in ``(after, until]``: how many, and the most recent ``kept`` of them in order."""

    count: int
    kept: list[datetime]


def missed(schedule: Schedule, after: datetime, until: datetime, keep: int) -> Missed:
    """Count the fire instants in ``(after, until]`` and keep the last ``keep`` (>= 1)."""
    if until <= after:
        return Missed(0, [])
    if schedule.every is not None:
        step = max(1, round(schedule.every * _US))
        first = _micros(schedule.next_fire(after))
        last = (_micros(until) // step) * step
        if last < first:
            return Missed(0, [])
        count = (last - first) // step + 1
        start = max(first, last - (keep - 1) * step)
        return Missed(count, [_at(t) for t in range(start, last + 1, step)])
    recent: deque[datetime] = deque(maxlen=keep)
    count = 0
    t = schedule.next_fire(after)
    while t <= until and count < SCAN_LIMIT:
        recent.append(t)
        count += 1
        t = schedule.next_fire(t)
    return Missed(count, list(recent))


def at_start(schedule: Schedule, last: datetime | None, now: datetime) -> Missed:
    """What a scheduler (re)starting at ``now`` fires for ticks after the recorded ``last``."""
    if last is None:
        return Missed(0, [])  # never fired: nothing was missed, start with the next tick
    return _apply(schedule, missed(schedule, last, now, schedule.max_catch_up), running=False)


def when_late(schedule: Schedule, awaited: datetime, now: datetime) -> Missed:
    """Ticks to fire when a running scheduler wakes at ``now`` for the tick ``awaited``.

    Usually ``[awaited]``; more ticks only when the process stalled past the next ones.
    """
    found = missed(schedule, awaited - _ONE_US, now, schedule.max_catch_up)
    return _apply(schedule, found, running=True)


def _apply(schedule: Schedule, found: Missed, *, running: bool) -> Missed:
    if not found.kept or schedule.catch_up == "all":
        return found
    if schedule.catch_up == "latest" or running:
        return Missed(found.count, found.kept[-1:])
    return Missed(found.count, [])


def _micros(t: datetime) -> int:
    return (t - EPOCH) // _ONE_US


def _at(micros: int) -> datetime:
    return EPOCH + micros * _ONE_US
