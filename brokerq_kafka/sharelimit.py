"""Rate limits of a kq consumer group, split among its members by partition share.

Kafka has no shared counter to take a token from, but the group already divides the work:
each partition of the topic belongs to exactly one member. So a member may start
``limit x assigned / total`` handlings per period, where ``assigned`` is how many partitions
of the main topic its consumers own now and ``total`` how many the topic has. The members'
shares add up to 1 whenever the group is balanced, so the whole group starts at most ``limit``
per period, and with no round trip per message.

Windows are fixed and aligned on the wall clock (``floor(now / period)``), as in
brokerq.ratelimit. A fractional share carries over: a member whose share is ``x`` handlings
per period starts ``floor((k + 1) x) - floor(k x)`` in window ``k``, so over N periods it
starts ``N x`` (rounded down) and a 1/s limit split in two still runs. Per window the group
may then exceed the limit by at most one handling per member; over N periods it does not.

What it cannot do: when messages sit in fewer partitions than the group owns (skewed keys,
an idle partition) the busy members get only their share and the group runs below the limit.
While a member owns no partition (joining, during a rebalance) it waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from brokerq.ratelimit import Rate, RateLimiter

NO_SHARE_WAIT = 0.2  # seconds between two looks at the share while this member owns nothing


class PartitionShareLimiter(RateLimiter):
    """A ``RateLimiter`` whose budget is this member's share of the group's limit.

    ``share()`` returns ``(assigned, total)`` partitions of the main topic (total 0 when
    unknown). ``clock``: unix seconds.
    """

    def __init__(
        self, share: Callable[[], tuple[int, int]], clock: Callable[[], float] = time.time
    ) -> None:
        self._share = share
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window index, started)

    def hit(self, key: str, rate: Rate) -> float:
        """0.0 and one handling counted under ``key``, or the seconds to wait (> 0)."""
        now = self._clock()
        index = math.floor(now / rate.period)
        assigned, total = self._share()
        if assigned <= 0 or total <= 0:
            return NO_SHARE_WAIT
        mine = rate.amount * min(1.0, assigned / total)
        budget = math.floor((index + 1) * mine + 1e-9) - math.floor(index * mine + 1e-9)
        with self._lock:
            window, started = self._windows.get(key, (index, 0))
            if window != index:
                started = 0
            if started >= budget:
                return max(0.001, (index + 1) * rate.period - now)
            self._windows[key] = (index, started + 1)
            return 0.0
