"""Job control on dq against the real servers (beanstalkd x3 + Redis): idempotent enqueue
(job_id / unique_for), Broker.job along a job's life, pause / resume, rate limits across
processes, routing of go-queue bodies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import greenstalk
import pytest
import redis

from brokerq.errors import DuplicateJob, NotSupported
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.routing import Router
from brokerq.worker import Worker
from brokerq_beanstalk import BeanstalkBroker
from brokerq_beanstalk.config import split_endpoint
from tests.brokerq_beanstalk.conftest import MakeConf

pytestmark = pytest.mark.integration

PROC = Path(__file__).with_name("dq_jobs_proc.py")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def working(broker: BeanstalkBroker, handler: Any, **options: Any) -> Iterator[Worker]:
    """A Worker on ``broker`` in a thread (pause flag polled), stopped afterwards."""
    options.setdefault("concurrency", 2)
    options.setdefault("shutdown_timeout", 10.0)
    worker = Worker(broker.source, paused=broker.is_paused, **options)
    thread = threading.Thread(target=worker.consume, args=(handler,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()


def state(broker: BeanstalkBroker, job_id: str) -> str | None:
    info = broker.job(job_id)
    return None if info is None else info.state


# -- idempotent enqueue ---------------------------------------------------------------------


def test_two_processes_race_for_one_job_id(make_conf: MakeConf, redis_url: str) -> None:
    conf = make_conf()
    r = redis.Redis.from_url(redis_url)
    key = f"{conf.redis.prefix}race:"
    args = ["order-42", "100"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROC), "enqueue", conf.model_dump_json(), redis_url, key, *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    r.set(f"{key}go", 1)
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o[0]) for o in outs) == 1, outs
    assert sum(int(o[1]) for o in outs) == 199, outs

    broker = BeanstalkBroker(conf)
    runs: list[str] = []
    with working(broker, lambda m: runs.append(m.id)):
        wait_until(lambda: state(broker, "order-42") == "done", 20, "the job to run")
        producer = broker.producer()
        producer.delay(b"again", 0, job_id="order-42", unique_for=60)  # no unique_for: free
        with pytest.raises(DuplicateJob) as dup:
            producer.delay(b"again", 0, job_id="order-42")
        assert dup.value.job_id == "order-42"
        wait_until(lambda: len(runs) == 2, 20, "the second job to run")
        # the first job's other copies come back after claim_ttl and are deleted unrun
        wait_until(lambda: _copies_left(broker) == 0, 30, "every copy to be gone")
        assert runs == ["order-42", "order-42"]
        producer.close()
    broker.close()


def _copies_left(broker: BeanstalkBroker) -> int:
    stats = broker.stats()
    return sum(v for k, v in stats.items() if k.endswith(":copies"))


def test_unique_for_keeps_the_id_then_frees_it(broker: BeanstalkBroker) -> None:
    producer = broker.producer()
    runs: list[bytes] = []
    assert producer.delay(b"first", 0, job_id="inv-1", unique_for=2) == "inv-1"
    with working(broker, lambda m: runs.append(m.value)):
        wait_until(lambda: state(broker, "inv-1") == "done", 20, "the job to run")
        with pytest.raises(DuplicateJob, match="done"):
            producer.delay(b"second", 0, job_id="inv-1")
        wait_until(lambda: _try_delay(producer, b"second", "inv-1"), 10, "the id to be free again")
        wait_until(lambda: runs == [b"first", b"second"], 20, "the reused id's job")
    info = broker.job("inv-1")
    assert info is not None and info.state == "done" and info.finished_at is not None
    producer.close()


def test_copies_of_an_earlier_job_with_a_reused_id_never_run(broker: BeanstalkBroker) -> None:
    producer = broker.producer()
    runs: list[bytes] = []
    producer.delay(b"first", 0, job_id="gen-1")
    with working(broker, lambda m: runs.append(m.value)):
        wait_until(lambda: state(broker, "gen-1") == "done", 20, "the first job")
        # its other two copies were released for claim_ttl; the id is free (no unique_for)
        producer.delay(b"second", 60, job_id="gen-1")
        # the old copies come back, are seen as an earlier generation and deleted unrun;
        # what stays is the second job's three copies
        wait_until(lambda: _copies_left(broker) == 3, 30, "the first job's copies to go")
        assert state(broker, "gen-1") == "delayed"
    assert runs == [b"first"]
    producer.close()


def _try_delay(producer: Any, value: bytes, job_id: str) -> bool:
    try:
        producer.delay(value, 0, job_id=job_id)
    except DuplicateJob:
        return False
    return True


def test_revoke_frees_the_id_and_a_failed_write_releases_it(make_conf: MakeConf) -> None:
    broker = BeanstalkBroker(make_conf())
    producer = broker.producer()
    producer.delay(b"x", 60, job_id="rv-1", unique_for=3600)
    with pytest.raises(DuplicateJob, match="delayed"):
        producer.push(b"x", job_id="rv-1")
    assert producer.revoke("rv-1")
    assert state(broker, "rv-1") == "revoked"
    producer.delay(b"y", 60, job_id="rv-1")  # free again
    assert state(broker, "rv-1") == "delayed"
    producer.close()
    broker.close()
    # two of three nodes unreachable: the write fails and the id stays free
    conf = make_conf(
        beanstalks=[
            {"endpoint": broker.conf.beanstalks[0].endpoint, "tube": broker.queue},
            {"endpoint": "127.0.0.1:1", "tube": broker.queue},
            {"endpoint": "127.0.0.1:2", "tube": broker.queue},
        ]
    )
    broken = BeanstalkBroker(conf)
    bad = broken.producer()
    with pytest.raises(Exception, match="needed"):
        bad.delay(b"z", 1, job_id="rv-2")
    assert broken.job("rv-2") is None
    bad.close()
    broken.close()


def test_job_id_with_goqueue_bodies_is_not_supported(make_conf: MakeConf) -> None:
    broker = BeanstalkBroker(make_conf(goqueue_compat=True))
    producer = broker.producer()
    with pytest.raises(NotSupported, match="go-queue"):
        producer.delay(b"x", 1, job_id="g-1")
    producer.close()
    broker.close()


# -- Broker.job along a job's life ----------------------------------------------------------


def test_job_states_along_the_life_and_across_a_worker_restart(make_conf: MakeConf) -> None:
    broker = BeanstalkBroker(make_conf(keep_done="1h"))
    producer = broker.producer()
    assert broker.job("nope") is None
    producer.delay(b"fail", 1.5, job_id="life-1")
    info = broker.job("life-1")
    assert info is not None and info.state == "delayed" and info.created_at is not None
    copies = info.details["copies"]  # made ready up to HOLD early, held by the consumer
    assert len(copies) >= 2 and set(copies.values()) <= {"ready", "delayed"}  # min_written
    assert info.due is not None
    assert info.details["guard"]["id_reserved"] is True

    release = threading.Event()

    def handler(msg: Message) -> None:
        release.wait(20)
        raise RuntimeError(f"boom {msg.attempt}")

    retry = RetryPolicy(max_attempts=2, backoff=3.0, jitter=False)
    with working(broker, handler, retry=retry):
        wait_until(lambda: state(broker, "life-1") == "running", 20, "running")
        release.set()
        wait_until(lambda: state(broker, "life-1") == "retrying", 20, "retrying")
    # the worker stopped: a fresh broker still reads the retry from Redis
    again = BeanstalkBroker(broker.conf)
    info = again.job("life-1")
    assert info is not None and info.state == "retrying" and info.attempt == 2
    assert info.last_error is not None and "boom 1" in info.last_error
    with working(again, handler, retry=retry):
        wait_until(lambda: state(again, "life-1") == "dead", 30, "dead")
    info = again.job("life-1")
    assert info is not None and info.attempt == 2 and info.finished_at is not None
    assert info.last_error is not None and "boom 2" in info.last_error

    producer.push(b"ok", job_id="life-2")
    assert state(again, "life-2") == "pending"
    with working(again, lambda m: None):
        wait_until(lambda: state(again, "life-2") == "done", 20, "done")
    producer.close()
    again.close()
    broker.close()


def test_a_dead_job_id_retried_takes_its_id_again_unless_reused(broker: BeanstalkBroker) -> None:
    producer = broker.producer()
    producer.push(b"a", job_id="dl-1")
    producer.push(b"b", job_id="dl-2")
    fail = {b"a", b"b"}
    ran: list[bytes] = []

    def handler(msg: Message) -> None:
        ran.append(msg.value)
        if msg.value in fail:
            raise RuntimeError("no")

    once = RetryPolicy(max_attempts=1)
    with working(broker, handler, retry=once):
        wait_until(lambda: state(broker, "dl-1") == state(broker, "dl-2") == "dead", 20, "dead")
        producer.delay(b"newer", 60, job_id="dl-2")  # the id is free: no unique_for
        fail.clear()
        assert broker.retry_dead(["dl-1", "dl-2"]) == 1  # dl-2's id is taken: stays dead
        wait_until(lambda: state(broker, "dl-1") == "done", 20, "the retried job")
    assert ran.count(b"a") == 2 and ran.count(b"b") == 1
    assert [d.message.id for d in broker.dead_letters()] == ["dl-2"]
    with pytest.raises(DuplicateJob, match="delayed"):  # held by the newer job
        producer.delay(b"x", 60, job_id="dl-2")
    producer.delay(b"x", 60, job_id="dl-1")  # the retried job ended: its id is free
    producer.close()


def test_keep_done_zero_forgets_finished_jobs(make_conf: MakeConf) -> None:
    broker = BeanstalkBroker(make_conf(keep_done=0))
    producer = broker.producer()
    job = producer.delay(b"x", 0)  # a generated id is looked up the same way
    assert state(broker, job) == "pending"
    done = threading.Event()
    with working(broker, lambda m: done.set()):
        assert done.wait(20)
        wait_until(lambda: broker.job(job) is None, 10, "the job to be forgotten")
    producer.close()
    broker.close()


# -- pause / resume -------------------------------------------------------------------------

N_PAUSE = 10_000


def test_pause_with_three_busy_workers_then_resume(make_conf: MakeConf) -> None:
    broker = BeanstalkBroker(make_conf())
    producer = broker.producer()
    for i in range(N_PAUSE):
        producer.push(str(i))
    producer.close()
    lock = threading.Lock()
    starts: list[float] = []
    runs: Counter[bytes] = Counter()

    def handler(msg: Message) -> None:
        with lock:
            starts.append(time.time())
            runs[msg.value] += 1

    with working(broker, handler), working(broker, handler), working(broker, handler):
        wait_until(lambda: len(starts) > 500, 60, "the workers to be busy")
        paused_at = time.time()
        broker.pause()
        assert broker.stats()["paused"] == 1
        time.sleep(1.5)  # the claim under test: nothing starts > 1 s after the pause
        with lock:
            late = [t - paused_at for t in starts if t > paused_at + 1.0]
            before = len(starts)
            last = max(starts) - paused_at
        print(f"pause: {before} of {N_PAUSE} started, the last {last:.3f}s after the pause")
        assert not late, f"{len(late)} job(s) started after the pause, up to {max(late):.2f}s"
        assert before < N_PAUSE
        broker.resume()
        assert broker.stats()["paused"] == 0
        wait_until(lambda: len(runs) == N_PAUSE, 180, "every job after the resume")
    assert len(runs) == N_PAUSE and set(runs.values()) == {1}
    broker.close()


def test_a_delayed_job_due_while_paused_waits_for_resume(broker: BeanstalkBroker) -> None:
    broker.pause()
    producer = broker.producer()
    producer.delay(b"later", 0.3, job_id="held-1")
    runs: list[bytes] = []
    with working(broker, lambda m: runs.append(m.value)):  # started while paused
        info = broker.job("held-1")
        assert info is not None and info.due is not None
        due = info.due
        wait_until(lambda: time.time() > due + 1.5, 10, "1.5 s past the due time")
        assert runs == [] and state(broker, "held-1") == "pending"
        broker.resume()
        wait_until(lambda: runs == [b"later"], 20, "the job after resume")
    producer.close()


# -- rate limits across processes -----------------------------------------------------------


def test_rate_limit_holds_across_two_processes(make_conf: MakeConf, redis_url: str) -> None:
    conf = make_conf()
    broker = BeanstalkBroker(conf)
    producer = broker.producer()
    for i in range(1500):
        producer.push(str(i))
    producer.close()
    r = redis.Redis.from_url(redis_url)
    key = f"{conf.redis.prefix}limited:"
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROC), "limited", conf.model_dump_json(), redis_url, key, "2"]
        )
        for _ in range(2)
    ]
    try:
        wait_until(lambda: r.llen(f"{key}starts") > 0, 60, "the first handling")
        first = float(r.lindex(f"{key}starts", 0) or 0)
        wait_until(lambda: time.time() > first + 20.5, 30, "20 s of handling")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(30) == 0
    starts = [float(x) for x in r.lrange(f"{key}starts", 0, -1)]
    first = min(starts)
    handled = sum(1 for t in starts if t < first + 20)
    print(f"rate limit 50/s, 4 workers in 2 processes: {handled} handled in 20 s")
    assert 950 <= handled <= 1050, handled
    assert broker.stats()["dead"] == 0
    broker.close()


# -- routing of go-queue bodies -------------------------------------------------------------


def test_goqueue_body_routes_to_the_catch_all(broker: BeanstalkBroker) -> None:
    body = b"%d/hello" % int(time.time() * 1e9)
    for node in broker.conf.beanstalks:
        with greenstalk.Client(split_endpoint(node.endpoint), encoding=None, use=node.tube) as c:
            c.put(body, priority=2, ttr=5)
    producer = broker.producer()
    producer.push(b"typed", type="email.welcome")
    producer.close()
    got: list[tuple[str, bytes]] = []
    router = Router(
        {
            "email.welcome": lambda m: got.append(("welcome", m.value)),
            "*": lambda m: got.append(("*", m.value)),
        }
    )
    with working(broker, router):
        wait_until(lambda: len(got) == 2, 20, "both jobs")
    assert sorted(got) == [("*", b"hello"), ("welcome", b"typed")]
