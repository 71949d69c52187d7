"""dq heartbeats: a Redis key per worker with a TTL, listed by ``BeanstalkBroker.workers``."""

from __future__ import annotations

from brokerq.heartbeat import Heartbeat
from brokerq_beanstalk import BeanstalkBroker
from tests.brokerq.web.cdp import wait_for


def test_heartbeat_key_has_a_ttl_and_expires(broker: BeanstalkBroker, redis_prefix: str) -> None:
    assert broker.workers() == []
    beat = Heartbeat(broker, name="dq-w", queue="t", concurrency=8, in_flight=lambda: 1, ttl=5)
    assert beat.beat()
    (info,) = broker.workers()
    assert (info.name, info.concurrency, info.in_flight) == ("dq-w", 8, 1)
    # count: one SCAN round trip per 10 keys (the default) over a shared Redis full of other
    # tests' keys can outlast the 5 s TTL
    keys = list(broker.guard.client.scan_iter(match=f"{redis_prefix}*workers*", count=10_000))
    assert len(keys) == 1 and 0 < broker.guard.client.ttl(keys[0]) <= 5
    wait_for(lambda: broker.workers() == [], 30, "the key to expire")
