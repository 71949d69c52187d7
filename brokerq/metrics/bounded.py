"""Calls to a broker that a scrape waits for only so long: cached, single-flight, time-bounded.

A scrape (or a ``/readyz`` probe) must answer even when the broker hangs. ``CachedCall``
runs the function in a daemon thread of its own, at most one call at a time; a caller waits
up to ``timeout`` seconds for a fresh result and otherwise gets the last one it has (marked
stale). Results are reused for ``ttl`` seconds, so N scrapers cost one broker call per ttl.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from brokerq.errors import NotSupported

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    """What a call returned (``value``) or raised (``error``), and when it finished."""

    value: T | None
    error: BaseException | None
    finished: float  # time.monotonic()

    @property
    def ok(self) -> bool:
        return self.error is None

    def age(self) -> float:
        return time.monotonic() - self.finished


class CachedCall(Generic[T]):
    """``get()`` returns ``fn()``'s latest result within ``timeout`` seconds, never later."""

    def __init__(self, fn: Callable[[], T], *, ttl: float, timeout: float, name: str) -> None:
        self._fn = fn
        self.ttl = ttl
        self.timeout = timeout
        self.name = name
        self._lock = threading.Lock()
        self._last: Result[T] | None = None
        self.last_good: Result[T] | None = None
        self._running: threading.Event | None = None
        self.unsupported = False

    def get(self) -> tuple[Result[T] | None, bool]:
        """``(result, fresh)``: ``fresh`` is False when the call did not finish in time and
        the result (possibly None: nothing yet) is an older one."""
        with self._lock:
            last = self._last
            if last is not None and (self.unsupported or last.age() < self.ttl):
                return last, True
            done = self._running
            if done is None:
                done = self._running = threading.Event()
                threading.Thread(
                    target=self._call,
                    args=(done,),
                    name=f"brokerq-metrics-{self.name}",
                    daemon=True,
                ).start()
        if done.wait(self.timeout):
            with self._lock:
                return self._last, True
        logger.warning("%s did not answer within %.1fs", self.name, self.timeout)
        return last, False

    def _call(self, done: threading.Event) -> None:
        try:
            result: Result[T] = Result(self._fn(), None, time.monotonic())
        except NotSupported as e:
            self.unsupported = True
            result = Result(None, e, time.monotonic())
        except Exception as e:
            logger.debug("%s failed: %s", self.name, e)
            result = Result(None, e, time.monotonic())
        with self._lock:
            self._last = result
            if result.ok:
                self.last_good = result
            self._running = None
        done.set()
