"""``Schedule``: one periodic job, and when it fires.

A schedule is either ``cron`` (5 fields, evaluated in ``timezone`` by cronsim) or ``every``
(an interval on elapsed UTC time). Fire instants are computed, never stored per process, so
every scheduler of a config agrees on them: that agreement is what makes the fire id
(brokerq.schedule.store.fire_id) deterministic.

Cron semantics are Debian cron's, as implemented by cronsim: a fixed-time job (minute and hour
fields not starting with ``*``) runs once in a repeated (fall-back) hour, and at the first valid
minute after a skipped (spring-forward) hour; other jobs follow the wall clock (a ``*/15`` job
runs in both passes of a repeated hour and not in a skipped one).

``every`` ticks are the multiples of the interval since the unix epoch (UTC): ``every: 1h``
fires at the top of each UTC hour, ``every: 15m`` at :00, :15, :30, :45 UTC, whatever the time
zone and whenever the scheduler started.
"""

from __future__ import annotations

import hashlib
import json as _json
import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokerq.duration import Duration
from brokerq.headers import FIRE_TIME, SCHEDULE

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def fire_time_text(when: datetime) -> str:
    """ISO 8601 UTC of a fire instant, e.g. ``2026-12-01T02:00:00Z`` (milliseconds if any)."""
    when = when.astimezone(UTC)
    spec = "milliseconds" if when.microsecond else "seconds"
    return when.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def human_duration(seconds: float) -> str:
    """``900`` → ``15m``, ``5400`` → ``1h30m``, ``0.25`` → ``250ms`` (brokerq.duration syntax)."""
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
    out, rest = "", int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


def parse_fire_time(text: str) -> datetime:
    """The instant ``fire_time_text`` wrote (aware, UTC); ValueError when it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Schedule(BaseModel):
    """One periodic job (``schedules:`` entry of a worker YAML file).

    Exactly one of ``cron`` / ``every``; at most one of ``value`` / ``json``. ``jitter`` delays
    each enqueue by a fixed pseudo-random part of it (the same in every scheduler, so the fire
    id and the ``brokerq-fire-time`` header stay the tick). Raises pydantic ValidationError
    (turned into ConfigError naming file, line and key by brokerq.config).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(description="unique within the config; [A-Za-z0-9._-], at most 100")
    cron: str | None = Field(default=None, description="5-field cron expression (Debian cron)")
    every: Duration | None = Field(default=None, description="interval on elapsed UTC time")
    timezone: str = Field(default="UTC", description="IANA time zone the cron fields are read in")
    value: str | None = Field(default=None, description="message value (text)")
    json_value: Any = Field(default=None, alias="json", description="message value as JSON")
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=0, description="where the backend has one")
    catch_up: Literal["latest", "all", "none"] = Field(
        default="latest",
        description="missed ticks after downtime: latest = one run, all = each (at most "
        "max_catch_up, the most recent), none = skip them",
    )
    max_catch_up: int = Field(default=100, ge=1)
    jitter: Duration = Field(default=0.0, description="spread enqueues over [0, jitter) seconds")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(
                f"invalid schedule name {value!r}: use letters, digits, '.', '_', '-' (max 100)"
            )
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split()) != 5:
            raise ValueError(f"invalid cron expression {value!r}: expected 5 fields")
        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as e:
            raise ValueError(f"invalid cron expression {value!r}: {e}") from None
        return value

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: float | None) -> float | None:
        if value is not None and value < 0.01:
            raise ValueError("every must be at least 10ms")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [h for h in value if h.lower() in (SCHEDULE, FIRE_TIME)]
        if reserved:
            raise ValueError(f"header {reserved[0]!r} is set by the scheduler")
        return value

    @model_validator(mode="after")
    def _one_spec(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("exactly one of cron and every is required")
        if self.value is not None and self.json_value is not None:
            raise ValueError("give value or json, not both")
        if self.jitter and self.every is not None and self.jitter >= self.every:
            raise ValueError("jitter must be shorter than every")
        return self

    # -- what it sends -----------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """``cron "0 2 * * *"`` or ``every 15m``-style text for listings."""
        if self.cron is not None:
            return f"cron {self.cron}"
        assert self.every is not None
        return f"every {human_duration(self.every)}"

    def body(self) -> bytes:
        """The message value: ``value`` as UTF-8, or ``json`` serialised compactly."""
        if self.json_value is not None:
            return _json.dumps(self.json_value, separators=(",", ":")).encode()
        return (self.value or "").encode()

    # -- when it fires -----------------------------------------------------------------------
    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def fixed_time(self) -> bool:
        """Debian cron's "fixed-time job": neither the minute nor the hour field starts with *."""
        if self.cron is None:
            return False
        minute, hour = self.cron.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def next_fire(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after`` (aware; naive is a ValueError).

        Returns an aware UTC datetime. Raises ValueError when a cron expression never fires
        again (e.g. ``0 0 30 2 *``).
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next_fire needs an aware datetime")
        after = after.astimezone(UTC)
        if self.every is not None:
            step = max(1, round(self.every * 1_000_000))
            elapsed = (after - EPOCH) // _US
            return EPOCH + (elapsed // step + 1) * step * _US
        assert self.cron is not None
        if self.fixed_time:
            return _next_fixed(self.cron, self.zone, after)
        return _next_wall(self.cron, self.zone, after)

    def fires(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every fire instant in ``(after, until]``, in order (aware UTC)."""
        t = self.next_fire(after)
        while t <= until:
            yield t
            t = self.next_fire(t)

    def jitter_for(self, fire_time: datetime) -> float:
        """Seconds in [0, jitter) to wait after ``fire_time``: the same in every process."""
        if not self.jitter:
            return 0.0
        digest = hashlib.sha256(f"{self.name}/{fire_time_text(fire_time)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * self.jitter


def _next_fixed(cron: str, zone: ZoneInfo, after: datetime) -> datetime:
    """A fixed-time job: cronsim walks naive wall time, so a repeated wall time is visited once
    (its first pass, fold=0) and a skipped one moves to the first valid minute after the gap."""
    it = CronSim(cron, after.astimezone(zone))
    try:
        while True:
            # A wall time of a repeated hour maps to its first pass, which may lie at or before
            # ``after`` (already fired): skip it.
            nxt = next(it).astimezone(UTC)
            if nxt > after:
                return nxt
    except StopIteration:
        raise ValueError(f"{cron!r} never fires again") from None


def _next_wall(cron: str, zone: ZoneInfo, after: datetime) -> datetime:
    """Any other job follows the wall clock as it is shown (Debian cron: "based on the new
    time"): it runs in both passes of a repeated hour and not in a skipped one.

    Between two offset changes of ``zone`` wall time is a fixed offset from UTC, so cronsim
    runs in that fixed offset; when its answer lies past an offset change, the search starts
    again at the change, in the new offset.
    """
    start, inclusive = after, False
    for _ in range(1000):
        offset = start.astimezone(zone).utcoffset()
        assert offset is not None
        fixed = timezone(offset)
        origin = start - timedelta(seconds=1) if inclusive else start
        try:
            candidate = next(CronSim(cron, origin.astimezone(fixed)))
        except StopIteration:
            raise ValueError(f"{cron!r} never fires again") from None
        change = _offset_change(zone, offset, start, candidate)
        if change is None:
            return candidate.astimezone(UTC)
        start, inclusive = change, True
    raise ValueError(f"{cron!r}: no fire time found")  # pragma: no cover (1000 offset changes)


_SCAN = timedelta(hours=6)


def _offset_change(
    zone: ZoneInfo, offset: timedelta, start: datetime, end: datetime
) -> datetime | None:
    """The first whole second in ``(start, end]`` where ``zone``'s UTC offset is not ``offset``.

    Scans in 6-hour steps (no zone changes its offset twice within 6 hours), then bisects.
    """
    lo = start
    while lo < end:
        hi = min(lo + _SCAN, end)
        if hi.astimezone(zone).utcoffset() != offset:
            lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
            while hi_s - lo_s > 1:
                mid = (lo_s + hi_s) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == offset:
                    lo_s = mid
                else:
                    hi_s = mid
            return datetime.fromtimestamp(hi_s, UTC)
        lo = hi
    return None
