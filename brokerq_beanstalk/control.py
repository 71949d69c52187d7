"""Queue-wide controls of dq kept in Redis: the pause flag and the shared rate-limit counters.

Pause: ``<prefix>{queue:<tube>}:paused`` (one key, its own hash tag). ``pause`` sets it,
``resume`` deletes it, ``is_paused`` is one EXISTS, which every Worker sends every
``brokerq.worker.PAUSE_POLL`` seconds. While paused, jobs stay in beanstalkd: the Source
gives back what it had reserved (``GIVE_BACK_AFTER``) and delayed jobs that come due wait
as ready jobs; nothing is deleted.

Rate limits: fixed windows of the ``limits`` library on Redis. Each counter key carries its
own hash tag (``{brokerq:rate:<tube>...}``), and ``limits`` increments it with a one-key Lua
script, so it works on Redis Cluster. Periods are whole seconds in ``limits``: a sub-second
rate (``5/100ms``) is counted as the same average over one second (``50/s``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from brokerq.errors import ConnectionFailed
from brokerq.ratelimit import Rate, RateLimiter
from brokerq_beanstalk.config import RedisConf
from brokerq_beanstalk.guard import Guard

__all__ = ["PauseFlag", "RedisRateLimiter"]


class PauseFlag:
    """The pause flag of one queue (tube)."""

    def __init__(self, guard: Guard, queue: str) -> None:
        self.guard = guard
        self.key = f"{guard.prefix}{{queue:{queue}}}:paused"

    def _do(self, what: str, *command: Any) -> Any:
        try:
            return self.guard.client.execute_command(*command)
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis ({what}): {e}") from e

    def pause(self) -> None:
        self._do("pause", "SET", self.key, repr(time.time()))

    def resume(self) -> None:
        self._do("resume", "DEL", self.key)

    def is_paused(self) -> bool:
        """One EXISTS; ConnectionFailed when Redis does not answer."""
        return bool(self._do("is_paused", "EXISTS", self.key))


def _item(rate: Rate) -> RateLimitItemPerSecond:
    """``rate`` as a limits item of whole seconds (sub-second periods scaled to one second)."""
    if rate.period >= 1 and float(rate.period).is_integer():
        return RateLimitItemPerSecond(rate.amount, int(rate.period))
    seconds = max(1, math.ceil(rate.period))
    return RateLimitItemPerSecond(max(1, round(rate.amount * seconds / rate.period)), seconds)


class RedisRateLimiter(RateLimiter):
    """Fixed-window counters shared by every worker of the queue (``limits`` on Redis)."""

    def __init__(self, guard: Guard, conf: RedisConf) -> None:
        prefix = f"{conf.prefix}limits"
        if guard.pool is not None:  # plain or Sentinel client: share its connection pool
            storage: RedisStorage = RedisStorage(
                "redis://", connection_pool=guard.pool, key_prefix=prefix
            )
        else:
            uri = "redis+cluster://" + conf.url.split("://", 1)[-1].split("/", 1)[0]
            opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
            if conf.username is not None:
                opts["username"] = conf.username
            if conf.password is not None:
                opts["password"] = conf.password
            if conf.uses_tls:
                opts["ssl"] = True
            storage = RedisClusterStorage(uri, key_prefix=prefix, **opts)
        self._guard = guard
        self._storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._items: dict[Rate, RateLimitItemPerSecond] = {}

    def hit(self, key: str, rate: Rate) -> float:
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = _item(rate)
        tag = f"{{{key}}}"  # one hash slot per limit key
        try:
            if self._limiter.hit(item, tag):
                return 0.0
            # the window's end to the millisecond (limits' own reset time is whole seconds,
            # so waiters would start the next window late and lose up to half a window)
            key = self._storage.prefixed_key(item.key_for(tag))
            conn: Any = self._storage.get_connection()
            left_ms = float(conn.pttl(key))
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis (rate limit): {e}") from e
        return max(0.001, left_ms / 1000)

    def close(self) -> None:
        if self._guard.pool is None:
            try:
                self._storage.storage.close()
            except (redis.RedisError, AttributeError):
                pass
        self._guard.close()
