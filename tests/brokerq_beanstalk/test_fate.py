"""A job's fate on dq (issue 10): the source carries out the Worker's outcome; priorities
end to end; crash-looping handlers end; time limits; dead letters keep type and traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import greenstalk
import pytest
import redis

from brokerq.errors import Retry
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.testing.servers import split_endpoint
from brokerq_beanstalk import BeanstalkBroker
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.contract import Recorder, running, wait_for

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("dq_worker.py")


def job_priorities(broker: BeanstalkBroker, state: str) -> list[int]:
    """Priorities of the copies in ``state`` (delayed / buried) on every node."""
    out: list[int] = []
    for node in broker.conf.beanstalks:
        with greenstalk.Client(split_endpoint(node.endpoint), use=node.tube) as c:
            peek = c.peek_delayed if state == "delayed" else c.peek_buried
            try:
                out.append(int(c.stats_job(peek())["pri"]))
            except greenstalk.NotFoundError:
                pass
    return out


def test_priority_0_runs_before_100_also_after_a_retry(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"p100", priority=100)
        producer.push(b"p0", priority=0)
        producer.delay(b"block", 1.0, priority=50)
    # retries: p100 comes due before p0, both while "block" keeps the only thread busy
    after = {b"p0": 2.5, b"p100": 2.0}
    due: dict[bytes, float] = {}

    def both_retries_due() -> bool:
        return len(due) == 2 and time.time() >= max(due.values()) + 0.5

    def handler(m: Message) -> None:
        rec(m)
        if m.value == b"block":  # hold the only thread until both retries wait (a slow
            wait_for(both_retries_due, timeout=20)  # machine must not reorder them)
        elif m.attempt == 1:
            due[m.value] = time.time() + after[m.value]
            raise Retry(after=after[m.value])

    rec = Recorder()
    with running(broker, handler, concurrency=1):
        assert wait_for(lambda: len(rec.seen) >= 5, timeout=30)
    assert [(m.value, m.attempt) for m in rec.seen] == [
        (b"p0", 1),
        (b"p100", 1),
        (b"block", 1),
        (b"p0", 2),
        (b"p100", 2),
    ]


def test_retry_and_dead_letter_keep_the_jobs_own_priority(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"seven", priority=7)
    rec = Recorder(fail=lambda m: Retry(after=60) if m.attempt == 1 else RuntimeError("no"))
    with running(broker, rec, retry=RetryPolicy(max_attempts=2)):
        assert wait_for(lambda: len(rec.seen) == 1)
        # released for its retry at its own priority, not the config's (2)
        assert wait_for(lambda: job_priorities(broker, "delayed") == [7, 7, 7], timeout=10)


def test_dead_letter_keeps_type_traceback_and_priority(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"bad", priority=9)

    def handler(msg: Message) -> None:
        empty: dict[str, int] = {}
        empty["missing"]

    with running(broker, handler, retry=RetryPolicy(max_attempts=1)):
        assert wait_for(lambda: len(broker.dead_letters()) == 1)
    (dead,) = broker.dead_letters()
    assert dead.error == "KeyError: 'missing'"
    assert "Traceback" in dead.traceback and "in handler" in dead.traceback
    assert job_priorities(broker, "buried") == [9]
    assert broker.retry_dead([dead.ref]) == 1
    for node in broker.conf.beanstalks:  # kicked back at its own priority
        with greenstalk.Client(split_endpoint(node.endpoint), use=node.tube) as c:
            try:
                assert int(c.stats_job(c.peek_ready())["pri"]) == 9
            except greenstalk.NotFoundError:
                pass


def test_handler_that_kills_its_worker_is_dead_after_max_attempts(
    make_conf: MakeConf, redis_url: str, redis_prefix: str
) -> None:
    conf = make_conf(claim_ttl="1s", retry={"max_attempts": 2}, concurrency=1)
    broker = BeanstalkBroker(conf)
    with broker.producer() as producer:
        job = producer.delay(b"kills", 0)
    r = redis.Redis.from_url(redis_url)
    key = f"{redis_prefix}crash:"
    deaths = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not broker.dead_letters():
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), conf.model_dump_json(), redis_url, key, "exit"],
            stdout=subprocess.DEVNULL,
        )
        try:

            def ended(p: subprocess.Popen[bytes] = proc) -> bool:
                return p.poll() is not None or bool(broker.dead_letters())

            wait_for(ended, timeout=30)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
            else:
                deaths += 1
    (dead,) = broker.dead_letters()
    assert dead.message.id == job
    assert dead.error.startswith("WorkerCrashed: delivered 3 times")
    assert deaths == 2
    assert [int(a) for a in r.lrange(f"{key}attempts", 0, -1)] == [1, 2]


def test_sync_handler_past_its_time_limit_is_retried_then_dead(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"hang")
        for i in range(10):
            producer.push(f"ok{i}")
    done: list[bytes] = []
    hung: list[int] = []
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        if msg.value == b"hang":
            hung.append(msg.attempt)
            while True:
                time.sleep(0.1)
        with lock:
            done.append(msg.value)

    policy = RetryPolicy(max_attempts=2, backoff=0.1, jitter=False)
    with running(broker, handler, concurrency=2, time_limit=1.0, retry=policy):
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=30)
        assert wait_for(lambda: len(done) == 10, timeout=30)
    (dead,) = broker.dead_letters()
    assert dead.error.startswith("TimeLimitExceeded")
    assert hung == [1, 2]
    assert sorted(done) == sorted(f"ok{i}".encode() for i in range(10))
