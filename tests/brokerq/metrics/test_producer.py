"""ProducerMetrics through the producer hooks of a real (memory) broker."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from brokerq.embedded.memory import MemoryBroker
from brokerq.metrics.producer import ProducerMetrics
from brokerq.testing.contract import wait_for
from tests.brokerq.metrics.helpers import by_label, parse, value


def test_pushes_and_failures_by_reason() -> None:
    broker = MemoryBroker.from_config({"backend": "memory", "queue": "mail"})
    pm = ProducerMetrics()
    broker.add_middleware(pm)
    registry = CollectorRegistry()
    registry.register(pm)
    with broker.producer() as producer:
        for i in range(3):
            producer.push(f"m{i}")
        with pytest.raises(TypeError):
            producer.push(123)  # type: ignore[arg-type]
    families = parse(generate_latest(registry).decode())
    assert value(families, "brokerq_pushes_total", queue="mail", outcome="ok") == 3
    assert value(families, "brokerq_pushes_total", queue="mail", outcome="failed") == 1
    assert value(families, "brokerq_push_failures_total", queue="mail", reason="TypeError") == 1
    assert broker.stats()["pending"] == 3


def test_without_pushes_no_samples() -> None:
    registry = CollectorRegistry()
    registry.register(ProducerMetrics())
    families = parse(generate_latest(registry).decode())
    assert "brokerq_pushes" in families
    assert value(families, "brokerq_pushes_total") is None


def scrape(pm: ProducerMetrics) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(pm)
    return parse(generate_latest(registry).decode())


@pytest.mark.integration
def test_kafka_producer_queue_depth_from_librdkafka_statistics(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    from brokerq_kafka.pusher import Pusher

    pm = ProducerMetrics(stats_interval=0.1)

    def depth() -> float | None:
        families = scrape(pm)
        return value(families, "brokerq_kafka_producer_queue_messages", queue=kafka_topic)

    # a long linger keeps the records in librdkafka's queue until the flush
    with Pusher(kafka_bootstrap, kafka_topic, flush_interval=30.0, middleware=[pm]) as pusher:
        for i in range(10):
            pusher.push(f"m{i}")
        assert wait_for(lambda: depth() == 10, 20), depth()
        size = value(scrape(pm), "brokerq_kafka_producer_queue_bytes", queue=kafka_topic)
        assert size is not None and size > 0
        pusher.flush(30)
        assert wait_for(lambda: depth() == 0, 20), depth()


def test_a_pusher_without_metrics_asks_for_no_statistics() -> None:
    from brokerq.middleware import MiddlewareChain

    assert MiddlewareChain([]).stats_interval is None
    assert MiddlewareChain([ProducerMetrics(stats_interval=2.0)]).stats_interval == 2.0


@pytest.mark.integration
def test_dq_replica_writes_failed_per_node(
    beanstalkd_endpoints: list[str], redis_url: str, beanstalk_tube: str, redis_prefix: str
) -> None:
    from brokerq_beanstalk import BeanstalkBroker

    down = "127.0.0.1:1"
    nodes = [*beanstalkd_endpoints[:2], down]
    broker = BeanstalkBroker.from_config(
        {
            "beanstalks": [{"endpoint": e, "tube": beanstalk_tube} for e in nodes],
            "redis": {"url": redis_url, "prefix": redis_prefix},
        }
    )
    pm = ProducerMetrics()
    broker.add_middleware(pm)
    try:
        with broker.producer() as producer:
            for i in range(3):
                producer.push(f"m{i}")  # 2 of 3 copies written: enough (min_written 2)
        families = scrape(pm)
        failed = by_label(families, "brokerq_replica_writes_failed_total", "node")
        assert failed == {down: 3}
        assert value(families, "brokerq_pushes_total", queue=beanstalk_tube, outcome="ok") == 3
    finally:
        broker.close()
