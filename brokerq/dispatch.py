"""The hand-out-when-due machinery every backend needs, written once.

A ``Dispatcher`` holds items (deliveries, jobs) until they may be handed to a worker:

- **due times**: an item put with ``due`` (unix seconds) waits in a heap until then, and is
  never handed out early;
- **ready order**: FIFO, or lowest ``priority_of(item)`` first when given (beanstalkd's
  rule: lower runs first), FIFO among equals;
- **per-key lanes**: with ``key_of``, at most one item per key is out at a time; later items
  of a busy key wait in its lane, in order, until ``done(item)`` hands the key on. An item
  put back with ``holds_key=True`` (a retry of the item that holds the key) keeps the key
  busy while it waits, so a key's later items stay behind its retry;
- **room**: a filler (a poll thread) asks ``wait_room`` before adding more, so memory stays
  bounded by ``capacity`` and backpressure reaches the broker.

All methods are thread-safe (one Condition). Takers block in ``get`` / ``get_many`` with a
timeout and get None / [] when idle or closed (dramatiq's "idle returns None"). A plain
dispatcher (no keys, no priorities) hands out from its FIFO without the lock while nothing
is delayed: ``deque.popleft`` is atomic, so each item still goes to exactly one taker, and
every other change to the FIFO happens under the lock and in place.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Dispatcher(Generic[T]):
    """Ready queue + due-time heap + per-key lanes + room signalling (see the module doc)."""

    def __init__(
        self,
        capacity: int = 1000,
        *,
        key_of: Callable[[T], Hashable | None] | None = None,
        priority_of: Callable[[T], int] | None = None,
        low_water: int | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self.low_water = self.capacity // 2 if low_water is None else low_water
        self._key_of = key_of
        self._priority_of = priority_of
        self._cond = threading.Condition()
        self._room = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        self._plain = key_of is None and priority_of is None
        self._fifo: deque[T] = deque()
        self._holding: set[int] = set()  # id() of FIFO items that hold their key already
        self._prio: list[tuple[int, int, T, bool]] = []
        self._delayed: list[tuple[float, int, T, bool]] = []
        self._lanes: dict[Hashable, deque[T]] = {}  # busy key -> its waiting items
        self._waiting = 0  # items parked in lanes
        self._seq = itertools.count()
        self._closed = False
        self._room_waiters = 0  # fillers blocked in wait_room: only then is room signalled

    # -- filling ------------------------------------------------------------------------------
    def put(self, item: T, due: float | None = None, *, holds_key: bool = False) -> None:
        """Add ``item``, to be handed out once unix time ``due`` has come (None: now)."""
        with self._cond:
            self._add(item, due, holds_key)
            self._cond.notify()

    def put_many(self, items: Iterable[T]) -> None:
        """Add items that are due now, in order, under one lock acquisition."""
        with self._cond:
            if self._priority_of is None:
                before = len(self._fifo)
                self._fifo.extend(items)
                n = len(self._fifo) - before
            else:
                n = 0
                for item in items:
                    self._add(item, None, False)
                    n += 1
            if n:
                self._cond.notify(n)

    def put_front(self, item: T, *, holds_key: bool = True) -> None:
        """Hand ``item`` out before anything else of its priority (a delivery given back
        unprocessed); ``holds_key``: it still holds its key lane."""
        with self._cond:
            self._front(item, holds_key)

    def _add(self, item: T, due: float | None, holds_key: bool) -> None:
        if due is not None and due > time.time():
            heapq.heappush(self._delayed, (due, next(self._seq), item, holds_key))
        elif self._priority_of is None:
            self._fifo.append(item)
            if holds_key and self._key_of is not None:
                self._holding.add(id(item))
        else:
            heapq.heappush(self._prio, (self._priority_of(item), next(self._seq), item, holds_key))

    def has_room(self) -> bool:
        """True while fewer than ``capacity`` items are held."""
        return len(self) < self.capacity

    def wait_room(self, timeout: float) -> bool:
        """Wait until at most ``low_water`` items are held (True) or ``timeout`` passes."""
        with self._room:
            if len(self) < self.capacity:
                return True
            self._room_waiters += 1
            try:
                return self._room.wait_for(
                    lambda: self._closed or len(self) <= self.low_water, timeout
                )
            finally:
                self._room_waiters -= 1

    # -- taking -------------------------------------------------------------------------------
    def get(self, timeout: float) -> T | None:
        """The next item that may go out, waiting up to ``timeout`` seconds; None if none."""
        if self._plain and not self._delayed and not self._closed:
            try:  # the hot path of a plain stream: no lock (see the module doc)
                item = self._fifo.popleft()
            except IndexError:
                pass
            else:
                if self._room_waiters and len(self) <= self.low_water:
                    with self._room:
                        self._room.notify_all()
                return item
        got = self.get_many(1, timeout)
        return got[0] if got else None

    def get_many(self, max_n: int, timeout: float) -> list[T]:
        """Up to ``max_n`` items: waits up to ``timeout`` seconds for the first, then takes
        what is ready at once. Empty when idle or closed."""
        deadline = time.monotonic() + timeout
        out: list[T] = []
        with self._cond:
            while True:
                if self._closed:
                    return out
                self._promote(time.time())
                while len(out) < max_n:
                    item = self._pop_ready()
                    if item is None:
                        break
                    out.append(item)
                if out:
                    if len(self) <= self.low_water:
                        self._room.notify_all()
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return out
                if self._delayed:
                    remaining = min(remaining, max(0.0, self._delayed[0][0] - time.time()))
                self._cond.wait(remaining)

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, item, holds = heapq.heappop(delayed)
            if self._priority_of is None:
                self._fifo.append(item)
                if holds and self._key_of is not None:
                    self._holding.add(id(item))
            else:
                heapq.heappush(self._prio, (self._priority_of(item), next(self._seq), item, holds))

    def _pop_ready(self) -> T | None:
        key_of = self._key_of
        while True:
            if self._priority_of is None:
                if not self._fifo:
                    return None
                item = self._fifo.popleft()
                holding = self._holding
                holds = bool(holding) and id(item) in holding
                if holds:
                    holding.discard(id(item))
            else:
                if not self._prio:
                    return None
                _, _, item, holds = heapq.heappop(self._prio)
            if key_of is None or holds:
                return item
            key = key_of(item)
            if key is None:
                return item
            lane = self._lanes.get(key)
            if lane is not None:  # the key is out: wait behind it
                lane.append(item)
                self._waiting += 1
                continue
            self._lanes[key] = deque()
            return item

    def done(self, item: T) -> None:
        """``item`` is settled: hand its key on to the next item waiting for it."""
        if self._key_of is None:
            return
        key = self._key_of(item)
        if key is None:
            return
        with self._cond:
            lane = self._lanes.get(key)
            if lane is None:
                return
            if lane:
                self._waiting -= 1
                self._front(lane.popleft(), True)
            else:
                del self._lanes[key]

    def _front(self, item: T, holds_key: bool) -> None:
        """Put ``item`` first in line (lock held)."""
        if self._priority_of is None:
            self._fifo.appendleft(item)
            if holds_key and self._key_of is not None:
                self._holding.add(id(item))
        else:
            # a negative sequence number sorts before every item of the same priority
            entry = (self._priority_of(item), -next(self._seq), item, holds_key)
            heapq.heappush(self._prio, entry)
        self._cond.notify()

    # -- housekeeping -------------------------------------------------------------------------
    def remove(self, match: Callable[[T], bool]) -> list[T]:
        """Take out every held item that ``match``es (revoked partitions, revoked jobs).

        Keys held by removed items are handed on; items that were out (not held here) are
        not affected: settle those through ``done`` as usual.
        """
        with self._cond:
            removed: list[T] = []
            freed: list[tuple[Hashable, bool]] = []

            def keep(item: T, holds: bool) -> bool:
                if not match(item):
                    return True
                removed.append(item)
                if holds and self._key_of is not None:
                    key = self._key_of(item)
                    if key is not None:
                        freed.append((key, True))
                return False

            fifo, holding = self._fifo, self._holding
            kept_fifo: list[T] = []
            while fifo:  # in place: lock-free takers pop from this same deque
                try:
                    item = fifo.popleft()
                except IndexError:
                    break
                holds = id(item) in holding
                if keep(item, holds):
                    kept_fifo.append(item)
                else:
                    holding.discard(id(item))
            fifo.extendleft(reversed(kept_fifo))
            self._prio = [e for e in self._prio if keep(e[2], e[3])]
            heapq.heapify(self._prio)
            self._delayed = [e for e in self._delayed if keep(e[2], e[3])]
            heapq.heapify(self._delayed)
            for key, lane in list(self._lanes.items()):
                kept = deque(i for i in lane if keep(i, False))
                self._waiting -= len(lane) - len(kept)
                self._lanes[key] = kept
            for key, _ in freed:
                waiting = self._lanes.get(key)
                if waiting:
                    self._waiting -= 1
                    self._front(waiting.popleft(), True)
                elif waiting is not None:
                    del self._lanes[key]
            if removed:
                self._room.notify_all()
            return removed

    def counts(self) -> tuple[int, int]:
        """(ready, delayed) items held; ready includes those waiting for their key."""
        with self._cond:
            return len(self._fifo) + len(self._prio) + self._waiting, len(self._delayed)

    def snapshot(self) -> tuple[list[T], list[tuple[float, T]]]:
        """A copy of what is held: ready items (hand-out order, then those waiting for their
        key) and ``(due, item)`` of delayed ones by due time (some may be due already)."""
        with self._cond:
            if self._priority_of is None:
                ready = list(self._fifo)
            else:
                ready = [e[2] for e in sorted(self._prio, key=lambda e: (e[0], e[1]))]
            for lane in self._lanes.values():
                ready.extend(lane)
            delayed = [(e[0], e[2]) for e in sorted(self._delayed, key=lambda e: (e[0], e[1]))]
        return ready, delayed

    def next_due(self) -> float | None:
        """Unix time the earliest delayed item comes due, or None."""
        with self._cond:
            return self._delayed[0][0] if self._delayed else None

    def __len__(self) -> int:
        return len(self._fifo) + len(self._prio) + len(self._delayed) + self._waiting

    def close(self) -> list[T]:
        """Wake every taker (they get None / []); return the items still held."""
        with self._cond:
            self._closed = True
            items = [*self._fifo] + [e[2] for e in self._prio]
            items += [e[2] for e in self._delayed]
            for lane in self._lanes.values():
                items.extend(lane)
            self._fifo.clear()
            self._holding.clear()
            self._prio.clear()
            self._delayed.clear()
            self._lanes.clear()
            self._waiting = 0
            self._cond.notify_all()
            self._room.notify_all()
            return items

    @property
    def closed(self) -> bool:
        return self._closed
