"""Consumers across nodes and processes (issue 11): running with a node down and reconnecting
to it (#9), no head-of-line blocking across processes (#10), stats counting each job once
with per-node lines (#11), dead letters by ref (#4), each failure logged once (#14)."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.testing.servers import probe
from brokerq.worker import Worker
from brokerq_beanstalk import BeanstalkBroker, Producer
from brokerq_beanstalk.config import Beanstalk
from brokerq_beanstalk.source import BeanstalkSource
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.contract import Recorder, consuming_in_thread, running, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def late_node() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """An endpoint with nothing listening yet; start a beanstalkd there with ``start()``."""
    binary = shutil.which("beanstalkd")
    if binary is None:
        pytest.fail("beanstalkd is not installed (scripts/services installs it)")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield f"127.0.0.1:{port}", procs
    for p in procs:
        p.terminate()
        p.wait(10)


def test_consumer_runs_on_the_nodes_that_answer_and_reconnects(
    make_conf: MakeConf,
    beanstalkd_endpoints: list[str],
    late_node: tuple[str, list[subprocess.Popen[bytes]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint, procs = late_node
    conf = make_conf()
    tube = conf.beanstalks[0].tube
    nodes = [*conf.beanstalks[:2], Beanstalk(endpoint=endpoint, tube=tube)]
    conf = conf.model_copy(update={"beanstalks": nodes})
    broker = BeanstalkBroker(conf)
    broker.check()  # 2 of 3 answer, 2 needed: fine, with a warning naming the third
    stats = broker.stats()
    assert stats[f"node:{endpoint}:unreachable"] == 1 and stats["nodes:up"] == 2
    with broker.producer() as producer:
        first = producer.delay(b"while down", 0)  # 2 of 3 written
    rec = Recorder()
    sources: list[BeanstalkSource] = []

    def source(prefetch: int | None = None) -> BeanstalkSource:
        sources.append(broker.source(prefetch))
        return sources[-1]

    caplog.set_level(logging.INFO, logger="brokerq_beanstalk")
    with consuming_in_thread(Worker(source, shutdown_timeout=10.0), rec):
        assert wait_for(lambda: [m.id for m in rec.seen] == [first], timeout=15)
        assert sources[0].nodes()[endpoint].startswith("down")
        assert "reconnecting in the background" in caplog.text
        procs.append(subprocess.Popen(["beanstalkd", "-l", "127.0.0.1", "-p", endpoint[10:]]))
        assert wait_for(lambda: probe("beanstalkd", "127.0.0.1", int(endpoint[10:])), timeout=10)
        assert wait_for(lambda: sources[0].nodes()[endpoint] == "up", timeout=15)
        only_new = Producer([nodes[2]], replicas=1, min_written=1)
        with only_new:
            later = only_new.delay(b"on the late node", 0)
        assert wait_for(lambda: later in [m.id for m in rec.seen], timeout=15)
    assert "3 of 3 nodes" in caplog.text


def test_no_head_of_line_blocking_across_processes(broker: BeanstalkBroker) -> None:
    """Two consumers with one thread each; a long job and four short ones due together: the
    short ones never wait behind the long one in the busy consumer's buffer."""
    finished: dict[bytes, float] = {}
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        time.sleep(4.0 if msg.value == b"long" else 0.1)
        with lock:
            finished[msg.value] = time.monotonic()

    with broker.producer() as producer:
        for value in (b"long", b"s1", b"s2", b"s3", b"s4"):
            producer.delay(value, 1.5)
    with running(broker, handler, concurrency=1), running(broker, handler, concurrency=1):
        assert wait_for(lambda: len(finished) == 5, timeout=30)
    shorts = [finished[v] for v in (b"s1", b"s2", b"s3", b"s4")]
    assert max(shorts) < finished[b"long"], finished


def test_stats_count_each_job_once(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"now")
        producer.delay(b"later", 60)
    stats = broker.stats()
    assert (stats["pending"], stats["delayed"], stats["in_flight"], stats["dead"]) == (1, 1, 0, 0)
    assert stats["nodes:up"] == 3
    assert all(v == 2 for k, v in stats.items() if k.startswith("node:") and k.endswith(":copies"))


def test_dead_letters_by_ref_and_limit(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        a = producer.delay(b"a", 0)
        b = producer.delay(b"b", 0)

    def handler(msg: Message) -> None:
        raise RuntimeError("no")

    with running(broker, handler, retry=RetryPolicy(max_attempts=1)):
        assert wait_for(lambda: len(broker.dead_letters()) == 2)
    assert len(broker.dead_letters(limit=1)) == 1
    (only_a,) = broker.dead_letters(refs=[a])
    assert only_a.message.id == a
    assert [d.message.id for d in broker.dead_letters(refs=[only_a.ref])] == [a]
    assert broker.purge_dead([only_a.ref]) == 1
    assert [d.message.id for d in broker.dead_letters()] == [b]
    assert broker.purge_dead([a]) == 0  # gone already: nothing else is touched
    assert [d.message.id for d in broker.dead_letters()] == [b]


def test_each_failure_is_logged_once_by_the_worker(
    broker: BeanstalkBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with broker.producer() as producer:
        job = producer.delay(b"x", 0)

    def handler(msg: Message) -> None:
        raise KeyError("missing")

    caplog.set_level(logging.DEBUG)
    with running(broker, handler, retry=RetryPolicy(max_attempts=2, backoff=0.1, jitter=False)):
        assert wait_for(lambda: len(broker.dead_letters()) == 1)
    ours = [
        r
        for r in caplog.records
        if r.name.startswith("brokerq_beanstalk") and job in r.getMessage()
    ]
    assert [r.getMessage() for r in ours if "KeyError" in r.getMessage()] == []
