"""kq stats: lag per partition, the oldest waiting record's age, and no phantom lag from the
commit markers that transactional writes (schedule fires) leave behind (brokerq_kafka.lag)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from brokerq.schedule import Schedule, message_for
from brokerq.testing.contract import wait_for
from brokerq.testing.servers import delete_topics
from brokerq_kafka import KafkaBroker
from brokerq_kafka.fires import KafkaFireStore
from brokerq_kafka.pusher import Pusher

pytestmark = pytest.mark.integration


def lags(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if k.startswith("lag:")}


def test_lag_per_partition_and_oldest_age(broker: KafkaBroker) -> None:
    conf = broker.conf
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        for i in range(3):
            pusher.push(f"m{i}".encode())
    stats = broker.stats()
    assert stats["pending"] == 3 == sum(lags(stats).values())
    assert len(lags(stats)) >= 1
    # the records wait: their age grows (read from the first unconsumed record's timestamp)
    assert wait_for(lambda: broker.stats().get("oldest_age_seconds", 0) >= 1, 20, interval=0.3)


def test_no_phantom_lag_after_a_transactional_fire(
    broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    s = Schedule(name="tick", every=60)
    t = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    store = broker.fire_store("lag")
    assert isinstance(store, KafkaFireStore)
    try:
        store._take_over()
        assert store.fire("tick", t, message_for(s, "lag", t)) is True
    finally:
        store.close()
    assert broker.stats()["pending"] >= 1
    handled = []
    with broker.source() as source:
        for _ in range(60):
            delivery = source.receive(1.0)
            if delivery is not None:
                source.ack(delivery)
                handled.append(delivery.message.id)
                break
    assert handled == [message_for(s, "lag", t).id]
    # the source committed the record; only the transaction's commit marker follows it,
    # which no consumer ever receives: that is no lag
    try:
        assert wait_for(lambda: broker.stats()["pending"] == 0, 20, interval=0.3), broker.stats()
        stats = broker.stats()
        assert set(lags(stats).values()) == {0} and stats["oldest_age_seconds"] == 0
    finally:
        delete_topics(
            kafka_bootstrap,
            [broker.conf.topic + ".schedules", broker.conf.topic + ".schedules-leader"],
        )
