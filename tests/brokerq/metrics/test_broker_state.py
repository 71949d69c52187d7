"""BrokerState: stats() mapped to gauges, cached, and never waited for past the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from brokerq.errors import ConnectionFailed, NotSupported
from brokerq.metrics.broker_state import BrokerState
from tests.brokerq.metrics.helpers import by_label, parse, value


def scrape(state: BrokerState) -> dict[str, Metric]:
    registry = CollectorRegistry()
    registry.register(state)
    return parse(generate_latest(registry).decode())


class Stats:
    """A stats() that counts its calls and can be made slow or failing."""

    def __init__(self, values: Mapping[str, float]) -> None:
        self.values = dict(values)
        self.calls = 0
        self.gate: threading.Event | None = None
        self.error: Exception | None = None

    def __call__(self) -> Mapping[str, float]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.error is not None:
            raise self.error
        return dict(self.values)


def test_keys_map_to_gauges_and_labels_are_redacted() -> None:
    stats = Stats(
        {
            "pending": 3,
            "delayed": 2,
            "in_flight": 1,
            "dead": 4,
            "oldest_age_seconds": 12.5,
            "paused": 1,
            "lag:0": 7,
            "lag:1": 0,
            "node:127.0.0.1:11300:pending": 3,
            "node:redis://app:hunter2@10.0.0.1:6379:pending": 1,
        }
    )
    families = scrape(BrokerState(stats, "w", "q"))
    assert by_label(families, "brokerq_queue_messages", "state") == {
        "pending": 3,
        "delayed": 2,
        "in_flight": 1,
        "dead": 4,
    }
    assert value(families, "brokerq_queue_oldest_age_seconds", worker="w", queue="q") == 12.5
    assert value(families, "brokerq_queue_paused", worker="w", queue="q") == 1
    assert by_label(families, "brokerq_kafka_lag", "partition") == {"0": 7, "1": 0}
    nodes = by_label(families, "brokerq_queue_node_messages", "node")
    assert nodes == {"127.0.0.1:11300": 3, "redis://app:***@10.0.0.1:6379": 1}
    assert value(families, "brokerq_broker_up") == 1
    text = generate_latest_of(BrokerState(stats, "w", "q"))
    assert "hunter2" not in text


def generate_latest_of(state: BrokerState) -> str:
    registry = CollectorRegistry()
    registry.register(state)
    return generate_latest(registry).decode()


def test_cached_for_the_ttl() -> None:
    stats = Stats({"pending": 1})
    state = BrokerState(stats, "w", "q", cache=60.0)
    for _ in range(5):
        scrape(state)
    assert stats.calls == 1
    state.call.ttl = 0.0
    stats.values["pending"] = 9
    assert by_label(scrape(state), "brokerq_queue_messages", "state") == {"pending": 9}
    assert stats.calls == 2


def test_a_hanging_broker_never_hangs_a_scrape() -> None:
    stats = Stats({"pending": 5})
    state = BrokerState(stats, "w", "q", cache=0.0, timeout=0.2)
    assert value(scrape(state), "brokerq_broker_up") == 1
    stats.gate = threading.Event()  # from now on stats() blocks until released
    try:
        started = time.monotonic()
        families = scrape(state)
        assert time.monotonic() - started < 10  # bounded by the timeout, not by the broker
        # the last values are served, marked as not fresh
        assert by_label(families, "brokerq_queue_messages", "state") == {"pending": 5}
        assert value(families, "brokerq_broker_up") == 0
        calls = stats.calls
        scrape(state)
        scrape(state)
        assert stats.calls == calls  # single flight: no pile of threads on a hung broker
    finally:
        stats.gate.set()


def test_failing_broker_reports_down_with_last_values() -> None:
    stats = Stats({"pending": 2})
    state = BrokerState(stats, "w", "q", cache=0.0)
    scrape(state)
    stats.error = ConnectionFailed("redis://u:pw@h:1 refused")
    families = scrape(state)
    assert value(families, "brokerq_broker_up") == 0
    assert by_label(families, "brokerq_queue_messages", "state") == {"pending": 2}
    age = value(families, "brokerq_broker_stats_age_seconds")
    assert age is not None and age >= 0


def test_never_answered_exports_down_without_values() -> None:
    stats = Stats({})
    stats.error = ConnectionFailed("down")
    families = scrape(BrokerState(stats, "w", "q"))
    assert value(families, "brokerq_broker_up") == 0
    assert by_label(families, "brokerq_queue_messages", "state") == {}


def test_backend_without_stats_exports_nothing_about_it() -> None:
    stats = Stats({})
    stats.error = NotSupported("no stats")
    state = BrokerState(stats, "w", "q", cache=0.0)
    for _ in range(3):
        families = scrape(state)
    assert value(families, "brokerq_broker_up") is None
    assert stats.calls == 1  # not asked again
