"""``Scheduler``: fires a config's schedules into its broker, exactly once per tick.

Run as many schedulers of one config as you like (one per worker process is the default of
``brokerq run``): each computes the same ticks and hands each to the broker's FireStore with a
deterministic fire id, and the broker enqueues an id once. The last fire of every schedule is
kept in the broker, so a restart neither repeats a tick nor skips more than ``catch_up`` says.

One thread owns a Scheduler (the one in ``run``); ``stop`` may be called from any thread or a
signal handler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from brokerq.errors import BrokerError, BrokerqError
from brokerq.headers import FIRE_TIME, SCHEDULE
from brokerq.message import Message
from brokerq.schedule import plan
from brokerq.schedule.spec import Schedule, fire_time_text
from brokerq.schedule.store import FireStore, fire_id

if TYPE_CHECKING:
    from brokerq.broker import Broker

logger = logging.getLogger(__name__)

Provider = Callable[[], Iterable[Schedule]]
Clock = Callable[[], datetime]
FireHook = Callable[[str, datetime, str, float], None]
"""``on_fire(schedule, tick, outcome, at)``: called once per tick handled, ``outcome`` one of
ok (this scheduler enqueued it), duplicate (another scheduler had), failed (the broker
refused; it is tried again), skipped (dropped by ``catch_up``); ``at`` = unix time of the
attempt. brokerq.metrics.scheduler turns these into metrics; the scheduler imports none."""

RETRY_AFTER = 1.0
"""Seconds before a fire that failed (broker unreachable) is tried again."""
IDLE_POLL = 0.5
"""Seconds between leadership checks while this scheduler is on standby."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class _Entry:
    schedule: Schedule
    due: datetime  # the next tick to fire


def message_for(schedule: Schedule, namespace: str, fire_time: datetime) -> Message:
    """The message of one tick: id = fire id, headers brokerq-schedule and brokerq-fire-time."""
    headers = dict(schedule.headers)
    headers[SCHEDULE] = schedule.name
    headers[FIRE_TIME] = fire_time_text(fire_time)
    return Message(
        value=schedule.body(),
        key=schedule.key.encode() if schedule.key is not None else None,
        headers=headers,
        id=fire_id(namespace, schedule.name, fire_time),
    )


def check_unique(schedules: Iterable[Schedule]) -> list[Schedule]:
    """The schedules as a list; ValueError naming a duplicated name."""
    out: list[Schedule] = []
    seen: set[str] = set()
    for s in schedules:
        if not isinstance(s, Schedule):
            raise ValueError(f"expected brokerq.Schedule, got {type(s).__name__}")
        if s.name in seen:
            raise ValueError(f"schedule name {s.name!r} is used twice")
        seen.add(s.name)
        out.append(s)
    return out


class Scheduler:
    """Fires ``schedules`` (plus those a ``provider`` returns) into ``broker``.

    ``namespace`` scopes fire ids and last-fire records (the config's ``name``). ``provider``
    is called at start and every ``sync_interval`` seconds; schedules it adds, changes or
    removes take effect then (a failing provider is logged and the current set kept).
    Raises NotSupported at ``run`` when the broker keeps no fire records. ``on_fire``
    (FireHook) hears of every tick handled; its errors are logged, never raised.
    """

    def __init__(
        self,
        broker: Broker | FireStore,
        schedules: Iterable[Schedule] = (),
        *,
        namespace: str = "brokerq",
        provider: Provider | None = None,
        sync_interval: float = 60.0,
        clock: Clock = utc_now,
        on_fire: FireHook | None = None,
    ) -> None:
        self.namespace = namespace
        self.on_fire = on_fire
        self._broker = broker
        self._static = check_unique(schedules)
        self._provider = provider
        self.sync_interval = sync_interval
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._stop = threading.Event()
        self._store: FireStore | None = None
        self._active = False
        self.fired = 0  # ticks this scheduler enqueued (others may have won the rest)
        self.activated_at: datetime | None = None  # when it last became active (planned catch-up)

    # -- public --------------------------------------------------------------------------------
    def open(self) -> FireStore:
        """Get the broker's FireStore now (NotSupported when it has none); ``run`` does too."""
        return self._open()

    def run(self) -> None:
        """Fire ticks until ``stop()``. Blocks; broker errors are logged and retried."""
        store = self._open()
        next_sync = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_sync:
                    self._sync()
                    next_sync = time.monotonic() + self.sync_interval
                if not self._check_active(store):
                    self._stop.wait(min(IDLE_POLL, max(0.0, next_sync - time.monotonic())))
                    continue
                wait = self._fire_due(store)
                wait = min(wait, max(0.0, next_sync - time.monotonic()))
                if store.max_wait is not None:
                    wait = min(wait, store.max_wait)
                if wait > 0:
                    self._stop.wait(wait)
        finally:
            self._close()

    def stop(self) -> None:
        """Ask ``run`` to return after the fire in progress. Safe from any thread."""
        self._stop.set()

    @property
    def schedules(self) -> list[Schedule]:
        """The schedules in force (static plus the provider's last answer)."""
        if not self._entries:
            return self._merged(self._load_provided())
        return [e.schedule for e in self._entries.values()]

    def fire_now(self, name: str) -> str:
        """Enqueue one run of ``name`` now (fire time = now), outside its ticks; return its id.

        The last-fire record is left alone. KeyError for an unknown name.
        """
        schedule = next((s for s in self.schedules if s.name == name), None)
        if schedule is None:
            raise KeyError(name)
        store = self._open()
        now = self._clock()
        message = message_for(schedule, self.namespace, now)
        store.fire(name, now, message, priority=schedule.priority, record=False)
        return message.id

    def last_fire(self, name: str) -> datetime | None:
        return self._open().last_fire(name)

    def close(self) -> None:
        self._close()

    # -- internals -----------------------------------------------------------------------------
    def _open(self) -> FireStore:
        if self._store is None:
            if isinstance(self._broker, FireStore):
                self._store = self._broker
            else:
                self._store = self._broker.fire_store(self.namespace)
        return self._store

    def _close(self) -> None:
        store, self._store = self._store, None
        if store is not None and store is not self._broker:
            store.close()

    def _load_provided(self) -> list[Schedule]:
        return [] if self._provider is None else list(self._provider())

    def _merged(self, provided: list[Schedule]) -> list[Schedule]:
        return check_unique([*self._static, *provided])

    def _sync(self) -> None:
        """Re-read the provider; add, replace and drop entries accordingly."""
        try:
            wanted = {s.name: s for s in self._merged(self._load_provided())}
        except (BrokerqError, ValueError) as e:  # pydantic ValidationError is a ValueError
            logger.error("schedules provider: %s; keeping the current schedules", e)
            return
        except Exception:
            logger.exception("schedules provider failed; keeping the current schedules")
            return
        for name in list(self._entries):
            if name not in wanted:
                logger.info("schedule %s removed", name)
                del self._entries[name]
        for name, schedule in wanted.items():
            entry = self._entries.get(name)
            if entry is not None and entry.schedule == schedule:
                continue
            if entry is not None:
                logger.info("schedule %s changed: %s", name, schedule.spec)
                entry.schedule = schedule
                entry.due = schedule.next_fire(self._clock())
            else:
                self._entries[name] = _Entry(schedule, self._clock())  # planned on activation
                if self._active:
                    self._plan_start(self._entries[name], self._clock())

    def _check_active(self, store: FireStore) -> bool:
        try:
            active = store.active()
        except BrokerError as e:
            logger.warning("scheduler %s: %s", self.namespace, e)
            active = False
        if active and not self._active:
            logger.info(
                "scheduler %s: active with %d schedule(s)", self.namespace, len(self._entries)
            )
            now = self._clock()
            self.activated_at = now
            for entry in self._entries.values():
                self._plan_start(entry, now)
        elif self._active and not active:
            logger.info("scheduler %s: standing by", self.namespace)
        self._active = active
        return active

    def _plan_start(self, entry: _Entry, now: datetime) -> None:
        """Catch up on ticks missed since the recorded last fire, then wait for the next one."""
        s = entry.schedule
        entry.due = s.next_fire(now)
        while not self._stop.is_set():
            try:
                last = self._open().last_fire(s.name)
                break
            except BrokerError as e:
                logger.warning("schedule %s: reading last fire: %s", s.name, e)
                self._stop.wait(RETRY_AFTER)
        else:
            return
        todo = plan.at_start(s, last, now)
        self._skipped(s, todo.count - len(todo.kept))
        if todo.count:
            logger.info(
                "schedule %s: %d tick(s) missed since %s; catch_up=%s fires %d",
                s.name,
                todo.count,
                fire_time_text(last) if last else "-",
                s.catch_up,
                len(todo.kept),
            )
        for tick in todo.kept:
            self._fire(s, tick)

    def _fire_due(self, store: FireStore) -> float:
        """Fire every entry whose tick (plus jitter) has come; seconds until the next one."""
        wait = self.sync_interval
        for entry in list(self._entries.values()):
            if self._stop.is_set():
                break
            s = entry.schedule
            now = self._clock()
            at = entry.due.timestamp() + s.jitter_for(entry.due)
            if now.timestamp() >= at:
                todo = plan.when_late(s, entry.due, now)
                self._skipped(s, todo.count - len(todo.kept))
                if todo.count > 1:
                    logger.warning(
                        "schedule %s: woke %.1fs late, %d ticks due; catch_up=%s fires %d",
                        s.name,
                        (now - entry.due).total_seconds(),
                        todo.count,
                        s.catch_up,
                        len(todo.kept),
                    )
                ok = all([self._fire(s, tick) for tick in todo.kept])
                if not ok:
                    return min(wait, RETRY_AFTER)  # entry.due unchanged: try again
                entry.due = s.next_fire(max(now, todo.kept[-1]) if todo.kept else now)
                at = entry.due.timestamp() + s.jitter_for(entry.due)
            wait = min(wait, at - self._clock().timestamp())
        return max(0.0, wait)

    def _fire(self, s: Schedule, tick: datetime) -> bool:
        """Hand one tick to the store; False when the broker failed (retry later)."""
        message = message_for(s, self.namespace, tick)
        try:
            won = self._open().fire(s.name, tick, message, priority=s.priority)
        except BrokerError as e:
            logger.warning("schedule %s: firing %s: %s", s.name, fire_time_text(tick), e)
            self._report(s.name, tick, "failed")
            return False
        if won:
            self.fired += 1
            logger.debug("schedule %s: fired %s", s.name, message.id)
        self._report(s.name, tick, "ok" if won else "duplicate")
        return True

    def _skipped(self, s: Schedule, n: int) -> None:
        for _ in range(max(0, n)):
            self._report(s.name, self._clock(), "skipped")

    def _report(self, name: str, tick: datetime, outcome: str) -> None:
        if self.on_fire is None:
            return
        try:
            self.on_fire(name, tick, outcome, time.time())
        except Exception:
            logger.exception("schedule %s: on_fire hook failed", name)
