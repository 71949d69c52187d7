"""dq ``delay_many`` / ``at_many`` on the real nodes (brokerq_beanstalk.batch_put): every job
runs once at its time, the 2-of-3 rule per job with nodes down, per-job errors, revoke by the
ids returned, caller-chosen ids."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from brokerq.batch_enqueue import DelayedJob
from brokerq.errors import DeliveryError, DuplicateJob, MessageTooLarge, NotSupported
from brokerq.message import Message
from brokerq_beanstalk import Beanstalk, BeanstalkBroker, DqConf, Producer
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.brokerq_beanstalk.helpers import consuming
from tests.contract import wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copies_per_node(conf: DqConf) -> list[int]:
    stats = BeanstalkBroker(conf).stats()
    return [stats.get(f"node:{b.endpoint}:copies", -1) for b in conf.beanstalks]


class Runs:
    """Thread-safe: how often each job ran and when (unix seconds) it first ran."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.at: dict[str, float] = {}
        self.not_before: dict[str, float | None] = {}
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        now = time.time()
        with self.lock:
            self.count[msg.id] += 1
            self.at.setdefault(msg.id, now)
            self.not_before[msg.id] = msg.not_before


def test_a_thousand_jobs_each_run_once_at_their_time(make_conf: MakeConf) -> None:
    conf = make_conf(concurrency=8)
    broker = BeanstalkBroker(conf)
    jobs = [(f"job-{i}".encode(), 1.0 + random.random() * 1.5) for i in range(1000)]
    sent_at = time.time()
    with broker.delay_producer() as producer:
        ids = producer.delay_many(jobs)
    assert all(isinstance(i, str) for i in ids), [i for i in ids if not isinstance(i, str)][:3]
    assert len(set(ids)) == 1000
    assert copies_per_node(conf) == [1000, 1000, 1000]
    runs = Runs()
    with consuming(conf, runs):
        assert wait_for(lambda: len(runs.count) >= 1000, timeout=60), len(runs.count)
        assert wait_for(lambda: copies_per_node(conf) == [0, 0, 0], timeout=30)
    assert set(runs.count) == set(ids)
    assert set(runs.count.values()) == {1}, "a job ran twice"
    for (_, delay), job_id in zip(jobs, ids, strict=True):
        assert isinstance(job_id, str)
        nb = runs.not_before[job_id]
        assert nb is not None and nb >= sent_at + delay
        assert runs.at[job_id] >= nb, f"{job_id} ran {nb - runs.at[job_id]:.3f}s early"


def test_one_node_down_still_two_copies_each(
    make_conf: MakeConf, beanstalkd_endpoints: list[str]
) -> None:
    conf = make_conf()
    tube = conf.beanstalks[0].tube
    down = f"127.0.0.1:{free_port()}"
    nodes = [Beanstalk(endpoint=e, tube=tube) for e in [down, *beanstalkd_endpoints[:2]]]
    with Producer(nodes) as producer:
        ids = producer.delay_many([(f"v{i}".encode(), 30) for i in range(600)])  # two chunks
        assert all(isinstance(i, str) for i in ids)
        for job_id in ids:
            assert isinstance(job_id, str)
            assert sorted(c.rpartition("/")[0] for c in producer.copies(job_id)) == sorted(
                beanstalkd_endpoints[:2]
            )
    assert copies_per_node(conf)[:2] == [600, 600]


def test_two_nodes_down_every_job_fails_and_no_lone_copy_remains(
    make_conf: MakeConf, beanstalkd_endpoints: list[str]
) -> None:
    conf = make_conf()
    tube = conf.beanstalks[0].tube
    down = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    nodes = [Beanstalk(endpoint=e, tube=tube) for e in [*down, beanstalkd_endpoints[0]]]
    with Producer(nodes) as producer:
        results = producer.delay_many([(f"v{i}".encode(), 30) for i in range(700)])
    assert len(results) == 700
    for r in results:
        assert isinstance(r, DeliveryError), r
        assert down[0] in str(r) and down[1] in str(r)
        assert "written to 1 node(s), 2 needed" in str(r)
    assert copies_per_node(conf)[0] == 0


def test_per_job_errors_do_not_stop_the_rest(make_conf: MakeConf) -> None:
    conf = make_conf()
    broker = BeanstalkBroker(conf)
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    with broker.delay_producer() as producer:
        results = producer.delay_many(
            [
                (b"ok-1", 1),
                (b"negative", -5),
                DelayedJob(b"priority too big", delay=1, priority=2**33),
                (b"x" * (70 * 1024), 1),  # beanstalkd's default max-job-size is 65535
                DelayedJob(b"ok-2", delay=1, priority=1, key=b"k", headers={"h": "v"}),
                (b"beyond beanstalkd", 2.0**33),
                DelayedJob(b"ok-3", when=soon),
            ]
        )
        at_results = producer.at_many([(b"ok-4", soon), (b"past", soon - timedelta(hours=1))])
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], ValueError) and "priority" in str(results[2])
    assert isinstance(results[3], MessageTooLarge)
    assert isinstance(results[5], ValueError)
    assert isinstance(at_results[1], ValueError)
    ok = [results[0], results[4], results[6], at_results[0]]
    assert all(isinstance(i, str) for i in ok)
    assert copies_per_node(conf) == [4, 4, 4]  # nothing of the refused jobs stayed
    runs = Runs()
    seen: dict[str, Message] = {}

    def handler(msg: Message) -> None:
        seen[msg.id] = msg
        runs(msg)

    with consuming(conf, handler):
        assert wait_for(lambda: len(runs.count) >= 4, timeout=30)
    assert set(runs.count) == set(ok)
    two = seen[results[4]]  # type: ignore[index]
    assert (two.value, two.key, two.headers.get("h")) == (b"ok-2", b"k", "v")


def test_ids_returned_revoke_from_another_producer(make_conf: MakeConf) -> None:
    conf = make_conf()
    broker = BeanstalkBroker(conf)
    with broker.delay_producer() as p1:
        ids = p1.delay_many([(f"r{i}".encode(), 1.5) for i in range(20)])
    cancel, keep = ids[:10], ids[10:]
    with broker.delay_producer() as p2:  # knows no copies itself: the Redis record says where
        assert [p2.revoke(i) for i in cancel] == [True] * 10  # type: ignore[arg-type]
        assert [p2.revoke(i) for i in cancel] == [False] * 10  # type: ignore[arg-type]
    assert copies_per_node(conf) == [10, 10, 10]
    runs = Runs()
    with consuming(conf, runs):
        assert wait_for(lambda: len(runs.count) >= 10, timeout=30)
        assert wait_for(lambda: copies_per_node(conf) == [0, 0, 0], timeout=30)
    assert set(runs.count) == set(keep)


def test_caller_chosen_ids_follow_delay(make_conf: MakeConf) -> None:
    """Jobs with a job_id take the ``schedule`` path: the same outcome ``delay`` gives."""
    broker = BeanstalkBroker(make_conf())
    with broker.delay_producer() as producer:
        results = producer.delay_many(
            [
                DelayedJob(b"a", delay=30, job_id="dqmany-same"),
                DelayedJob(b"b", delay=30, job_id="dqmany-same"),
                (b"plain", 30),
            ]
        )
        try:
            producer.delay(b"probe", 30, job_id="dqmany-probe")
        except NotSupported:
            assert isinstance(results[0], NotSupported) and isinstance(results[1], NotSupported)
        else:
            assert isinstance(results[0], str) and isinstance(results[1], DuplicateJob)
        assert isinstance(results[2], str)
