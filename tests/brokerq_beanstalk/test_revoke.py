"""revoke tells found / not found truthfully, removes the beanstalkd copies from any process,
and its mark lives as long as the job could come due (issue 11 #5)."""

from __future__ import annotations

import time

import pytest
import redis

from brokerq.message import Message
from brokerq_beanstalk import BeanstalkBroker
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.contract import Recorder, running, wait_for

pytestmark = pytest.mark.integration


def copies_on_nodes(broker: BeanstalkBroker) -> int:
    return sum(
        v for k, v in broker.stats().items() if k.startswith("node:") and k.endswith(":copies")
    )


def test_unknown_id_is_not_found(broker: BeanstalkBroker) -> None:
    with broker.delay_producer() as producer:
        assert producer.revoke("not-an-id") is False
        assert producer.revoke("01M8QH2BBFEA89B2AKZ2ZX27FC") is False


def test_revoke_from_another_process_deletes_every_copy(broker: BeanstalkBroker) -> None:
    with broker.delay_producer() as p1:
        job = p1.delay(b"cancel-me", 30)
    assert copies_on_nodes(broker) == 3
    with broker.delay_producer() as p2:  # a fresh producer (the CLI): knows no copies itself
        assert p2.revoke(job) is True
        assert copies_on_nodes(broker) == 0
        assert p2.revoke(job) is False  # already revoked


def test_revoked_mark_outlives_a_long_delay(make_conf: MakeConf, redis_url: str) -> None:
    conf = make_conf(done_ttl="60s")
    broker = BeanstalkBroker(conf)
    with broker.delay_producer() as producer:
        job = producer.delay(b"in an hour", 3600)
        assert producer.revoke(job) is True
    ttl_ms = redis.Redis.from_url(redis_url).pttl(broker.guard.key(job, "done"))
    assert ttl_ms > 3600 * 1000


def test_a_job_that_ran_is_not_revoked(broker: BeanstalkBroker) -> None:
    with broker.delay_producer() as producer:
        job = producer.delay(b"runs", 0)
    rec = Recorder()
    with running(broker, rec):
        assert wait_for(lambda: len(rec.seen) == 1)
    with broker.delay_producer() as producer:
        assert producer.revoke(job) is False


def test_revoked_while_held_by_a_consumer_never_runs(broker: BeanstalkBroker) -> None:
    with broker.delay_producer() as producer:
        job = producer.delay(b"held", 2.5)  # made ready ~1.5 s early, held by the consumer
        keep = producer.delay(b"kept", 2.5)
    seen: list[Message] = []
    with running(broker, seen.append):
        # wait until the copies are reserved and held (not deletable from outside)
        assert wait_for(lambda: broker.stats()["in_flight"] == 2, timeout=10)
        with broker.delay_producer() as other:
            assert other.revoke(job) is True
        assert wait_for(lambda: len(seen) == 1, timeout=15)
        time.sleep(1.0)
    assert [m.id for m in seen] == [keep]
    assert wait_for(lambda: copies_on_nodes(broker) == 0, timeout=10)
