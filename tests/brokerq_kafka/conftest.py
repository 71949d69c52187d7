"""Fixtures for the kafka tests: a KqConf on a fresh topic, with its own group and DLQ topic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from brokerq.testing.servers import create_topic, delete_topics
from brokerq_kafka import KafkaBroker, KqConf

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def create_topic_with_config(bootstrap: str, name: str, config: dict[str, str]) -> None:
    """A one-partition topic with topic-level ``config`` (e.g. ``max.message.bytes``)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=1, replication_factor=1, config=config)
    admin.create_topics([topic])[name].result(timeout=30)


def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (the retry topics sources make)."""
    from confluent_kafka.admin import AdminClient

    try:
        names = [
            t
            for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
            if t.startswith(prefix)
        ]
    except Exception:
        return
    delete_topics(bootstrap, names)


@pytest.fixture
def make_conf(kafka_bootstrap: str, kafka_topic: str, unique_name: str) -> Iterator[Any]:
    """``make_conf(**overrides)``: a KqConf for the test's topic; the DLQ topic is made once."""
    dlq = f"{kafka_topic}.dlq"
    create_topic(kafka_bootstrap, dlq, 1)

    def make(**overrides: Any) -> KqConf:
        values: dict[str, Any] = {
            "brokers": kafka_bootstrap,
            "topic": kafka_topic,
            "group": f"g-{unique_name}",
            "offset": "first",
            "processors": 4,
            "client_config": dict(FAST_GROUP),
        }
        values.update(overrides)
        return KqConf(**values)

    yield make
    delete_topics(kafka_bootstrap, [dlq])
    delete_topics_with_prefix(kafka_bootstrap, f"{kafka_topic}.retry.")  # made by the sources


@pytest.fixture
def broker(make_conf: Any) -> Iterator[KafkaBroker]:
    b = KafkaBroker(make_conf())
    yield b
    b.close()
