"""ProducerMetrics through the producer hooks of a real (memory) broker."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from brokerq.embedded.memory import MemoryBroker
from brokerq.metrics.producer import ProducerMetrics
from tests.brokerq.metrics.helpers import parse, value


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
