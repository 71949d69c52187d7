"""Scheduler metrics: the hook point the scheduler calls once per fire.

The scheduler (periodic jobs) reports each tick it handled through its ``on_fire`` hook
(brokerq.schedule.scheduler.FireHook), so it imports no prometheus code::

    metrics = SchedulerMetrics(registry)          # exporter.scheduler in `brokerq run`
    Scheduler(broker, schedules, on_fire=metrics.hook)
    metrics.fired("nightly-report", fire_time=tick, outcome="ok", pushed_at=time.time())

Exported (label ``schedule`` = the schedule's name):

    brokerq_schedule_fires_total{schedule, outcome}        ok | duplicate | failed | skipped
    brokerq_schedule_last_fire_timestamp_seconds{schedule} unix time of the last tick fired
    brokerq_schedule_fire_lateness_seconds{schedule}       histogram: push time - tick time
                                                           (jitter and catch-up included)

Fires are rare (at most a few per second), so these are prometheus_client's own metrics.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("ok", "duplicate", "failed", "skipped")
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class SchedulerMetrics:
    """Counters, last-fire gauge and lateness histogram of schedules, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fires = Counter(
            "brokerq_schedule_fires",
            "Schedule ticks handled, by outcome (ok, duplicate, failed, skipped).",
            ["schedule", "outcome"],
            registry=registry,
        )
        self.last_fire = Gauge(
            "brokerq_schedule_last_fire_timestamp_seconds",
            "Unix time of the last tick that fired, per schedule.",
            ["schedule"],
            registry=registry,
        )
        self.lateness = Histogram(
            "brokerq_schedule_fire_lateness_seconds",
            "Time from a tick to its job being pushed, seconds.",
            ["schedule"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )

    def fired(self, schedule: str, *, fire_time: float, outcome: str, pushed_at: float) -> None:
        """Record one tick: ``fire_time`` is the tick (unix s), ``pushed_at`` when the job
        was pushed (or the attempt failed); ``outcome`` one of OUTCOMES."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self.fires.labels(schedule, outcome).inc()
        if outcome in ("ok", "duplicate"):
            self.last_fire.labels(schedule).set(fire_time)
            self.lateness.labels(schedule).observe(max(0.0, pushed_at - fire_time))

    def hook(self, schedule: str, tick: datetime, outcome: str, at: float) -> None:
        """The scheduler's ``on_fire`` (FireHook): ``tick`` an aware datetime, ``at`` unix s."""
        self.fired(schedule, fire_time=tick.timestamp(), outcome=outcome, pushed_at=at)
