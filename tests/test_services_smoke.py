"""Smoke tests for the real-services harness (scripts/services + tests/services.py)."""

from __future__ import annotations

import time

import pytest

from brokerq.testing.servers import port_open, split_endpoint
from tests.services import Services


def test_kafka_produce_consume(kafka_bootstrap: str, kafka_topic: str) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    delivered: list[object] = []
    producer.produce(
        kafka_topic,
        key=b"k",
        value=b"hello",
        on_delivery=lambda err, msg: delivered.append(err or msg),
    )
    assert producer.flush(30) == 0
    assert len(delivered) == 1 and not isinstance(delivered[0], Exception), delivered

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{kafka_topic}-g",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([kafka_topic])
        deadline = time.monotonic() + 60
        msg = None
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            msg = m
            break
        assert msg is not None, "no message consumed within 60s"
        assert (msg.key(), msg.value()) == (b"k", b"hello")
        consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()


def test_beanstalkd_round_trip(beanstalkd_endpoints: list[str], beanstalk_tube: str) -> None:
    import greenstalk

    assert len(beanstalkd_endpoints) == 3
    for endpoint in beanstalkd_endpoints:
        with greenstalk.Client(
            split_endpoint(endpoint), use=beanstalk_tube, watch=beanstalk_tube
        ) as c:
            jid = c.put(f"hello {endpoint}")
            job = c.reserve(timeout=5)
            assert (job.id, job.body) == (jid, f"hello {endpoint}")
            c.delete(job)
            with pytest.raises(greenstalk.NotFoundError):
                c.peek_ready()


def test_redis_set_get(redis_url: str, redis_prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        r.set(f"{redis_prefix}k", b"v", ex=60)
        assert r.get(f"{redis_prefix}k") == b"v"
    finally:
        r.close()


def test_beanstalkd_kill_restart_keeps_jobs(
    beanstalkd_endpoints: list[str], beanstalk_tube: str, services: Services
) -> None:
    import greenstalk

    addr = split_endpoint(beanstalkd_endpoints[1])
    with greenstalk.Client(addr, use=beanstalk_tube, watch=beanstalk_tube) as c:
        jid = c.put("survive the crash", ttr=60)

    # beanstalkd fsyncs the binlog at most every 50ms (-f 50); SIGKILL does not lose the
    # page cache, but give it a moment anyway
    time.sleep(0.1)
    services.kill("beanstalkd1")
    assert not port_open(*addr), "beanstalkd1 still accepting connections after kill"

    services.restart("beanstalkd1")
    with greenstalk.Client(addr, use=beanstalk_tube, watch=beanstalk_tube) as c:
        job = c.reserve(timeout=5)
        assert (job.id, job.body) == (jid, "survive the crash")
        c.delete(job)
