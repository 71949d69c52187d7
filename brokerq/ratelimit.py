"""Rate limits that hold across every worker of a queue, not per worker (celery #5732).

``rate_limit: {limit: 100/s, types: {email.welcome: 10/s}}`` in a worker YAML: at most
``limit`` handlings start per period on the whole queue, and at most the type's own limit
for messages of that type. A message over the limit **waits** in its worker (its lease is
kept): it is not failed and does not use an attempt.

The count lives where every worker can see it, so each Broker provides the store
(``Broker.rate_limiter()``): the sqlite file, Redis for dq (through the ``limits``
library), the process itself for the memory broker. Windows are fixed (``limits``' fixed
window): over N periods at most N x limit handlings start, and the bound is exact at period
boundaries.
"""

from __future__ import annotations

import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brokerq.headers import TYPE
from brokerq.message import Message

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(ms|s|sec|second|m|min|minute|h|hour)\s*$")
_PERIOD = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PERIOD |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True, slots=True)
class Rate:
    """``amount`` handlings per ``period`` seconds."""

    amount: int
    period: float

    def __str__(self) -> str:
        return f"{self.amount}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """``"100/s"``, ``"5/10s"``, ``"600/m"``, ``"1000/h"`` → Rate; ValueError otherwise."""
    match = _RATE.match(str(text))
    if match is None:
        raise ValueError(f"invalid rate {text!r}: use N/s, N/m, N/h or N/10s")
    amount, count, unit = int(match.group(1)), match.group(2), match.group(3)
    period = _PERIOD[unit] * (int(count) if count else 1)
    if amount < 1 or period <= 0:
        raise ValueError(f"invalid rate {text!r}: amount and period must be positive")
    return Rate(amount, float(period))


class RateLimitConfig(BaseModel):
    """The ``rate_limit:`` section of a worker YAML."""

    model_config = ConfigDict(extra="forbid")

    limit: str | None = Field(default=None, description="for the whole queue, e.g. 100/s")
    types: dict[str, str] = Field(default_factory=dict, description="job type -> rate")

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("types")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_rate(rate)
        return value


class RateLimiter(ABC):
    """A counter shared by every worker of a queue; one per Broker."""

    @abstractmethod
    def hit(self, key: str, rate: Rate) -> float:
        """Count one handling under ``key`` if ``rate`` allows it now: return 0.0; else
        count nothing and return the seconds to wait before trying again (> 0)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most limiters hold nothing
        """Release what the limiter holds (connections)."""


class LocalRateLimiter(RateLimiter):
    """Fixed windows in this process only: right for the memory broker (one process)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, rate: Rate) -> float:
        now = self._clock()
        start = math.floor(now / rate.period) * rate.period
        with self._lock:
            window, count = self._windows.get(key, (start, 0))
            if window != start:
                window, count = start, 0
            if count >= rate.amount:
                return max(0.001, window + rate.period - now)
            self._windows[key] = (window, count + 1)
            return 0.0


class RateLimits:
    """The limits of one worker: waits until a message may start (used by the Worker)."""

    def __init__(self, limiter: RateLimiter, config: RateLimitConfig, queue: str) -> None:
        self.limiter = limiter
        self.queue_rate = None if config.limit is None else parse_rate(config.limit)
        self.type_rates: Mapping[str, Rate] = {t: parse_rate(r) for t, r in config.types.items()}
        self.prefix = f"brokerq:rate:{queue}"

    def wait(self, message: Message, stopping: threading.Event) -> bool:
        """Block until ``message`` may start (True), or until ``stopping`` is set (False).

        The type's limit is checked first, then the queue's, so a message that waits for
        its type does not use up the queue's budget.
        """
        checks: list[tuple[str, Rate]] = []
        kind = message.headers.get(TYPE)
        if kind is not None and kind in self.type_rates:
            checks.append((f"{self.prefix}:type:{kind}", self.type_rates[kind]))
        if self.queue_rate is not None:
            checks.append((self.prefix, self.queue_rate))
        for key, rate in checks:
            while True:
                wait = self.limiter.hit(key, rate)
                if wait <= 0:
                    break
                if stopping.wait(min(wait, 1.0)):
                    return False
        return True
