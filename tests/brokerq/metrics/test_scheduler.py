"""SchedulerMetrics: the hook the scheduler reports fires to."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from brokerq.metrics.scheduler import SchedulerMetrics
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
