"""The pipelined consumer: copies held beside a running job follow its outcome, grouped done
marks, and a burst of jobs runs once each."""

from __future__ import annotations

import threading

import greenstalk
import pytest
import redis

from brokerq.message import Message
from brokerq.testing.servers import split_endpoint
from brokerq_beanstalk import BeanstalkBroker, Producer
from brokerq_beanstalk.guard import Guard
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.brokerq_beanstalk.helpers import consuming
from tests.contract import Recorder, wait_for

pytestmark = pytest.mark.integration


def copies_left(conf: object) -> int:
    total = 0
    for node in conf.beanstalks:  # type: ignore[attr-defined]
        with greenstalk.Client(split_endpoint(node.endpoint), use=node.tube) as c:
            stats: dict[str, object] = (
                dict(c.stats_tube(node.tube)) if node.tube in c.tubes() else {}
            )
            total += sum(
                int(str(stats.get(k, 0)))
                for k in ("current-jobs-ready", "current-jobs-reserved", "current-jobs-delayed")
            )
    return total


def test_burst_runs_once_and_every_copy_is_deleted_soon(make_conf: MakeConf) -> None:
    conf = make_conf(claim_ttl="15s", concurrency=8)  # copies released for 15 s would linger
    n = 600
    with Producer.from_conf(conf) as producer:
        ids = {producer.delay(b"j%d" % i, 0).partition("|")[0] for i in range(n)}
    rec = Recorder()
    with consuming(conf, rec):
        assert wait_for(lambda: len(rec.seen) >= n, timeout=30)
        # the other copies were held beside the running job and deleted after its done mark
        assert wait_for(lambda: copies_left(conf) == 0, timeout=5)
    assert sorted(m.id for m in rec.seen) == sorted(ids)


def test_held_copies_follow_a_retry(make_conf: MakeConf) -> None:
    conf = make_conf(retry={"max_attempts": 3, "backoff": "100ms", "max_backoff": "100ms"})
    with Producer.from_conf(conf) as producer:
        producer.delay(b"flaky", 0)
    attempts: list[int] = []
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        with lock:
            attempts.append(msg.attempt)
            if len(attempts) < 3:
                raise RuntimeError("not yet")

    with consuming(conf, handler):
        assert wait_for(lambda: len(attempts) >= 3, timeout=20)
        assert wait_for(lambda: copies_left(conf) == 0, timeout=5)
    assert attempts == [1, 2, 3]
    assert BeanstalkBroker(conf).dead_letters() == []


def test_shared_done_marks_from_many_threads(redis_url: str, redis_prefix: str) -> None:
    guard = Guard(redis.Redis.from_url(redis_url), redis_prefix, claim_ttl=30.0)
    ids = [f"g{i}" for i in range(200)]
    for i in ids:
        assert guard.claim(i, "t-" + i)

    def mark(chunk: list[str]) -> None:
        for i in chunk:
            guard.mark_done_shared(i, "t-" + i)

    threads = [threading.Thread(target=mark, args=(ids[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(guard.is_done(i) for i in ids)
    assert guard.client.exists(*[guard.key(i, "claim") for i in ids]) == 0  # claims dropped
    assert all(guard.acquire(i, "x").done == "done" for i in ids)
    guard.close()


def test_shared_done_mark_raises_when_redis_is_unreachable(redis_prefix: str) -> None:
    from brokerq.errors import ConnectionFailed

    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    guard = Guard(client, redis_prefix)
    with pytest.raises(ConnectionFailed):
        guard.mark_done_shared("x", "t")
    with pytest.raises(ConnectionFailed):  # the lead was handed back: a second call works too
        guard.mark_done_shared("y", "t")
