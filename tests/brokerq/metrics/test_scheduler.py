"""SchedulerMetrics: the hook the scheduler reports fires to."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from brokerq.errors import ConnectionFailed
from brokerq.message import Message
from brokerq.metrics.scheduler import SchedulerMetrics
from brokerq.schedule import Schedule, Scheduler
from brokerq.schedule.store import FireStore
from tests.brokerq.metrics.helpers import parse, value


def test_fires_last_fire_and_lateness() -> None:
    registry = CollectorRegistry()
    m = SchedulerMetrics(registry)
    m.fired("nightly", fire_time=1000.0, outcome="ok", pushed_at=1000.02)
    m.fired("nightly", fire_time=2000.0, outcome="duplicate", pushed_at=2003.0)
    m.fired("nightly", fire_time=3000.0, outcome="failed", pushed_at=3000.5)
    f = parse(generate_latest(registry).decode())
    assert value(f, "brokerq_schedule_fires_total", schedule="nightly", outcome="ok") == 1
    assert value(f, "brokerq_schedule_fires_total", schedule="nightly", outcome="failed") == 1
    assert value(f, "brokerq_schedule_last_fire_timestamp_seconds", schedule="nightly") == 2000.0
    assert value(f, "brokerq_schedule_fire_lateness_seconds_count", schedule="nightly") == 2
    assert value(f, "brokerq_schedule_fire_lateness_seconds_bucket", le="0.05") == 1
    assert value(f, "brokerq_schedule_fire_lateness_seconds_bucket", le="5.0") == 2


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        SchedulerMetrics(CollectorRegistry()).fired("x", fire_time=0, outcome="maybe", pushed_at=0)


class Store(FireStore):
    """A FireStore whose ``fire`` answers what the test says."""

    def __init__(self) -> None:
        super().__init__("ns")
        self.answer: bool | Exception = True
        self.last: datetime | None = None

    def last_fire(self, name: str) -> datetime | None:
        return self.last

    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_scheduler_reports_each_outcome_through_its_hook() -> None:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    store = Store()
    s = Schedule(name="t", every=60)
    scheduler = Scheduler(store, [s], on_fire=metrics.hook)
    tick = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert scheduler._fire(s, tick) is True
    store.answer = False  # another scheduler fired it first
    assert scheduler._fire(s, tick) is True
    store.answer = ConnectionFailed("down")
    assert scheduler._fire(s, tick) is False
    f = parse(generate_latest(registry).decode())
    for outcome in ("ok", "duplicate", "failed"):
        assert value(f, "brokerq_schedule_fires_total", schedule="t", outcome=outcome) == 1
    assert (
        value(f, "brokerq_schedule_last_fire_timestamp_seconds", schedule="t") == tick.timestamp()
    )


def test_a_failing_hook_never_stops_a_fire() -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("hook bug")

    s = Schedule(name="t", every=60)
    scheduler = Scheduler(Store(), [s], on_fire=broken)
    assert scheduler._fire(s, datetime(2026, 1, 1, tzinfo=timezone.utc)) is True
    assert scheduler.fired == 1


def test_ticks_dropped_by_catch_up_are_reported_skipped() -> None:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    store = Store()
    now = datetime(2026, 1, 1, 1, 0, 30, tzinfo=timezone.utc)
    store.last = datetime(2026, 1, 1, 0, 50, tzinfo=timezone.utc)  # 10 ticks missed since
    s = Schedule(name="m", every=60, catch_up="latest")
    scheduler = Scheduler(store, [s], on_fire=metrics.hook, clock=lambda: now)
    scheduler._sync()
    assert scheduler._check_active(store)  # plans the start: catches up the latest tick only
    f = parse(generate_latest(registry).decode())
    assert value(f, "brokerq_schedule_fires_total", schedule="m", outcome="ok") == 1
    assert value(f, "brokerq_schedule_fires_total", schedule="m", outcome="skipped") == 9
