"""dq behaviour beyond the shared contract: replication, revoke, duplicates, dead letters,
go-queue bodies, error translation."""

from __future__ import annotations

import socket
import threading
import time

import greenstalk
import pytest

from brokerq.errors import ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.testing import servers
from brokerq.testing.servers import split_endpoint
from brokerq_beanstalk import Beanstalk, BeanstalkBroker, DqConf, Producer
from brokerq_beanstalk.guard import Guard
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.brokerq_beanstalk.helpers import consuming
from tests.contract import Recorder, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_job_is_written_to_three_nodes(make_conf: MakeConf) -> None:
    conf = make_conf()
    with Producer.from_conf(conf) as producer:
        job = producer.delay(b"x", 30)
        copies = producer.copies(job)
    assert len(copies) == 3
    assert {c.rpartition("/")[0] for c in copies} == {b.endpoint for b in conf.beanstalks}
    stats = BeanstalkBroker(conf).stats()
    assert stats["delayed"] == 1  # each job once
    assert [stats[f"node:{b.endpoint}:copies"] for b in conf.beanstalks] == [1, 1, 1]


def test_revoke_from_another_producer_never_runs(make_conf: MakeConf) -> None:
    conf = make_conf()
    broker = BeanstalkBroker(conf)
    with broker.delay_producer() as p1:
        job = p1.delay(b"cancel-me", 1.2)
        keep = p1.delay(b"keep-me", 1.2)
    with broker.delay_producer() as p2:  # knows no copies: only the Redis mark stops it
        assert p2.revoke(job) is True
        assert p2.revoke(job) is False  # already revoked
    rec = Recorder()
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= 1, timeout=15)
        time.sleep(1.5)
    assert [m.id for m in rec.seen] == [keep]


def test_identical_bodies_both_run(make_conf: MakeConf) -> None:
    conf = make_conf()
    with Producer.from_conf(conf) as producer:
        ids = [producer.delay(b"same body", 0.3) for _ in range(2)]
        ids += [producer.delay(b"same body", 0) for _ in range(2)]
    rec = Recorder()
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= 4, timeout=15)
        time.sleep(1.0)
    assert sorted(m.id for m in rec.seen) == sorted(ids)


def test_retries_then_dead_letter_then_retry_dead(make_conf: MakeConf) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.1, jitter=False)
    conf = make_conf(retry=policy.model_dump())
    broker = BeanstalkBroker(conf)
    with broker.delay_producer() as producer:
        job = producer.delay(b"poison", 0.2)
    fail = threading.Event()
    fail.set()

    def handler(msg: Message) -> None:
        rec(msg)
        if fail.is_set():
            raise ValueError(f"bad input on attempt {msg.attempt}")

    rec = Recorder()
    with consuming(conf, handler):
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=20)
        time.sleep(0.5)
    assert [m.attempt for m in rec.seen] == [1, 2, 3]
    (dead,) = broker.dead_letters()
    assert dead.message.id == job
    assert dead.message.attempt == 3
    assert "ValueError: bad input on attempt 3" in dead.error
    assert broker.stats()["dead"] == 1  # one buried copy; the replicas were deleted
    # kick it back: it runs afresh (attempt 1) and succeeds
    fail.clear()
    assert broker.retry_dead([dead.ref]) == 1
    with consuming(conf, handler):
        assert wait_for(lambda: len(rec.seen) == 4, timeout=15)
    assert rec.seen[-1].attempt == 1
    assert broker.dead_letters() == []


def test_purge_dead(make_conf: MakeConf) -> None:
    conf = make_conf(retry={"max_attempts": 1})
    broker = BeanstalkBroker(conf)
    with broker.delay_producer() as producer:
        producer.push(b"a")
        producer.push(b"b")

    def handler(msg: Message) -> None:
        raise RuntimeError("no")

    with consuming(conf, handler):
        assert wait_for(lambda: len(broker.dead_letters()) == 2, timeout=15)
    assert broker.purge_dead() == 2
    assert broker.dead_letters() == []
    assert broker.stats()["dead"] == 0


def test_goqueue_bodies_are_consumed_once(make_conf: MakeConf) -> None:
    conf = make_conf()
    body = b"%d/hello from go" % int((time.time() + 0.4) * 1e9)
    for node in conf.beanstalks:  # what go-queue's producer writes: the same bytes, 3 nodes
        with greenstalk.Client(split_endpoint(node.endpoint), encoding=None, use=node.tube) as c:
            c.put(body, priority=2, delay=0, ttr=5)
    rec = Recorder()
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= 1, timeout=15)
        time.sleep(1.0)
    assert len(rec.seen) == 1
    assert rec.seen[0].value == b"hello from go"
    assert rec.times[0] >= rec.seen[0].not_before  # type: ignore[operator]


def test_undecodable_body_is_buried_not_run(make_conf: MakeConf) -> None:
    conf = make_conf()
    node = conf.beanstalks[0]
    with greenstalk.Client(split_endpoint(node.endpoint), encoding=None, use=node.tube) as c:
        c.put(b"garbage without a time", ttr=5)
    rec = Recorder()
    broker = BeanstalkBroker(conf)
    with consuming(conf, rec):
        assert wait_for(lambda: broker.stats()["dead"] == 1, timeout=10)
    assert rec.seen == []
    (dead,) = broker.dead_letters()
    assert dead.message.value == b"garbage without a time"


def test_too_big_is_message_too_large(make_conf: MakeConf) -> None:
    with Producer.from_conf(make_conf()) as producer, pytest.raises(MessageTooLarge):
        producer.delay(b"x" * (70 * 1024), 1)  # beanstalkd's default max-job-size is 65535


def test_unreachable_nodes(make_conf: MakeConf, beanstalkd_endpoints: list[str]) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    one = Beanstalk(endpoint=dead[0], tube="t")
    with Producer([one]) as producer, pytest.raises(ConnectionFailed, match=dead[0]):
        producer.delay(b"x", 1)
    # two of three nodes down: fewer than min_written → DeliveryError naming them, partial revoked
    conf = make_conf()
    nodes = [
        Beanstalk(endpoint=e, tube=conf.beanstalks[0].tube)
        for e in [*dead, beanstalkd_endpoints[0]]
    ]
    with Producer(nodes) as producer, pytest.raises(DeliveryError) as info:
        producer.delay(b"x", 30)
    assert dead[0] in str(info.value) and dead[1] in str(info.value)
    assert BeanstalkBroker(conf).stats()["delayed"] == 0
    # check() names every unreachable node when fewer than min_written answer
    bad = DqConf.model_validate(
        {**conf.model_dump(), "beanstalks": [n.model_dump() for n in nodes]}
    )
    with pytest.raises(ConnectionFailed) as info2:
        BeanstalkBroker(bad).check()
    assert dead[0] in str(info2.value) and dead[1] in str(info2.value)
    assert "min_written" in str(info2.value)
    BeanstalkBroker(conf).check()


def test_single_node_clamps_replicas(make_conf: MakeConf) -> None:
    conf = make_conf()
    producer = Producer(conf.beanstalks[:1], replicas=3, min_written=2)
    assert (producer.replicas, producer.min_written) == (1, 1)
    with producer:
        job = producer.delay(b"solo", 5)
        assert len(producer.copies(job)) == 1
        assert producer.revoke(job) is True


def test_negative_ttl_config_rejected() -> None:
    with pytest.raises(ValueError):
        DqConf.model_validate({"beanstalks": [], "redis": {}})
    with pytest.raises(ValueError):
        DqConf.model_validate({"beanstalks": [{"endpoint": "a:1", "tube": "t"}], "bogus": 1})


def test_guard_claim_is_exclusive(redis_url: str, redis_prefix: str) -> None:
    import redis

    guard = Guard(redis.Redis.from_url(redis_url), redis_prefix, claim_ttl=1.0)
    assert guard.claim("j1", "a")
    assert not guard.claim("j1", "b")
    assert guard.renew([("j1", "a"), ("j1", "b")]) == [True, False]
    guard.mark_done("j1", "a")
    assert guard.is_done("j1")
    assert guard.acquire("j1", "c").done == "done"
    guard.close()


def test_long_retry_delay_is_honoured_by_every_replica(make_conf: MakeConf) -> None:
    from brokerq.errors import Retry

    conf = make_conf(claim_ttl="1s")
    with Producer.from_conf(conf) as producer:
        producer.push(b"later")
    rec = Recorder(fail=lambda m: Retry(after=4.0) if m.attempt == 1 else None)
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= 2, timeout=20)
        time.sleep(1.5)
    assert [m.attempt for m in rec.seen] == [1, 2]
    assert rec.times[1] - rec.times[0] >= 4.0
    assert rec.times[1] >= rec.seen[1].not_before  # type: ignore[operator]


def test_dead_letters_belong_to_their_tube(
    make_conf: MakeConf, beanstalkd_endpoints: list[str], beanstalk_tube: str
) -> None:
    """Two queues under one Redis prefix: each lists, retries and purges only its own dead
    letters (the index is shared by the prefix; a newcomer purged another queue's once)."""
    other_tube = f"{beanstalk_tube}-b"
    conf_a = make_conf(retry={"max_attempts": 1})
    nodes_b = [{"endpoint": e, "tube": other_tube} for e in beanstalkd_endpoints]
    conf_b = make_conf(retry={"max_attempts": 1}, beanstalks=nodes_b)
    a, b = BeanstalkBroker(conf_a), BeanstalkBroker(conf_b)

    def handler(msg: Message) -> None:
        raise RuntimeError(f"no {msg.value.decode()}")

    try:
        with a.delay_producer() as producer:
            producer.push(b"a")
        with b.delay_producer() as producer:
            producer.push(b"b")
        with consuming(conf_a, handler), consuming(conf_b, handler):
            assert wait_for(lambda: len(a.dead_letters()) == 1, timeout=15)
            assert wait_for(lambda: len(b.dead_letters()) == 1, timeout=15)
        assert [d.message.value for d in a.dead_letters()] == [b"a"]
        assert [d.message.value for d in b.dead_letters()] == [b"b"]
        assert b.retry_dead([a.dead_letters()[0].message.id]) == 0  # not b's to retry
        assert b.purge_dead() == 1
        assert b.dead_letters() == []
        assert [d.message.value for d in a.dead_letters()] == [b"a"]
        assert a.purge_dead() == 1
    finally:
        a.close()
        b.close()
        servers.drain_tube(beanstalkd_endpoints, other_tube, timeout=30)


def test_pause_scope_names_the_tube() -> None:
    conf = DqConf.model_validate(
        {"beanstalks": [{"endpoint": "a:1", "tube": "mails"}], "redis": {"url": "redis://a:1"}}
    )
    assert BeanstalkBroker(conf).pause_scope == "tube mails"
