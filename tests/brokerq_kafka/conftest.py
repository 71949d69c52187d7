"""Fixtures for the kafka tests: a KqConf on a fresh topic, with its own group and DLQ topic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from brokerq_kafka import KafkaBroker, KqConf

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    fs = admin.create_topics([topic])
    fs[name].result(timeout=30)


def delete_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics([name], operation_timeout=10)[name].result(timeout=30)
    except Exception:
        pass


def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for f in admin.delete_topics(names, operation_timeout=10).values():
                f.result(timeout=30)
    except Exception:
        pass


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
    delete_topic(kafka_bootstrap, dlq)
    delete_topics_with_prefix(kafka_bootstrap, f"{kafka_topic}.retry.")  # made by the sources


@pytest.fixture
def broker(make_conf: Any) -> Iterator[KafkaBroker]:
    b = KafkaBroker(make_conf())
    yield b
    b.close()
