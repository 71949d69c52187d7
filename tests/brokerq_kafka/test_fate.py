"""A message's fate on the real Kafka (issue 10): the Worker decides, the source carries it
out; retries live in retry topics; dead letters are never lost, cut or blocked."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from brokerq.errors import Drop
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.testing.servers import delete_topics
from brokerq_kafka import KafkaBroker, KqConf, Pusher, Queue
from tests.brokerq_kafka.conftest import create_topic_with_config
from tests.brokerq_kafka.test_kafka import read_topic, running_queue
from tests.contract import wait_for

pytestmark = pytest.mark.integration

ConfFactory = Callable[..., KqConf]
ROOT = Path(__file__).resolve().parents[2]

# the counts compared; stats() also has lag:<partition> and oldest_age_seconds
COUNTS = ("pending", "retrying", "dead", "paused")


@pytest.fixture
def dlq_topic(kafka_bootstrap: str, kafka_topic: str) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(**config: str) -> str:
        name = f"{kafka_topic}.dlq{len(made) + 2}"
        create_topic_with_config(kafka_bootstrap, name, config)
        made.append(name)
        return name

    yield make
    delete_topics(kafka_bootstrap, made)


def set_topic_config(bootstrap: str, topic: str, key: str, value: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)


def test_drop_with_failing_dead_letter_write_runs_the_handler_once(
    make_conf: ConfFactory, dlq_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    # A topic whose records may not exceed 64 bytes refuses any dead letter, even cut.
    dlq = dlq_topic(**{"max.message.bytes": "64"})
    conf = make_conf(dead_letter_topic=dlq, push_timeout=2.0)
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(b"drop me", key="k")
    runs: list[int] = []

    def handle(msg: Message) -> None:
        runs.append(msg.attempt)
        raise Drop("not wanted here")

    caplog.set_level(logging.WARNING, logger="brokerq.worker")
    with KafkaBroker(conf) as broker, running_queue(Queue(conf, handle)):
        assert wait_for(lambda: "carrying out dead failed" in caplog.text, timeout=60)
        set_topic_config(conf.brokers[0], dlq, "max.message.bytes", "1000000")
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=60)
        assert wait_for(lambda: broker.stats()["pending"] == 0, timeout=30)
    assert runs == [1], "the handler ran again after the dead-letter write failed"
    (record,) = read_topic(conf.brokers[0], dlq, 1)
    headers = {k: v.decode() for k, v in record.headers()}
    assert headers["brokerq-error"] == "Drop: not wanted here"
    assert headers["brokerq-error-type"] == "Drop"
    assert 'raise Drop("not wanted here")' in headers["brokerq-traceback"]


def test_oversized_dead_letter_is_written_cut_and_the_offset_moves_on(
    make_conf: ConfFactory, dlq_topic: Callable[..., str]
) -> None:
    dlq = dlq_topic(**{"max.message.bytes": "20000"})
    conf = make_conf(dead_letter_topic=dlq)
    big = os.urandom(200_000)
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(big, key="big")
        for i in range(20):
            pusher.push(f"after{i}", key="big")  # same partition, after it

    def handle(msg: Message) -> None:
        if msg.value == big:
            raise Drop("too big to handle")

    with KafkaBroker(conf) as broker, running_queue(Queue(conf, handle)):
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=60)
        assert wait_for(lambda: broker.stats()["pending"] == 0, timeout=30), broker.stats()
        (dead,) = broker.dead_letters()
    (record,) = read_topic(conf.brokers[0], dlq, 1)
    headers = {k: v.decode() for k, v in record.headers()}
    assert headers["brokerq-original-size"] == str(len(big))
    assert headers["brokerq-sha256"] == hashlib.sha256(big).hexdigest()
    value = record.value()
    assert value is not None and len(value) < 20_000 and big.startswith(value)
    assert dead.error == "Drop: too big to handle"


def test_a_message_in_backoff_never_holds_the_commit_point(make_conf: ConfFactory) -> None:
    n = 10_000
    policy = RetryPolicy(max_attempts=5, backoff=10.0, max_backoff=10.0, jitter=False)
    conf = make_conf(processors=8)
    with Pusher(conf.brokers, conf.topic) as pusher:
        pusher.push(b"bad", key="b")
        for i in range(n):
            pusher.push(str(i), key=f"k{i % 50}")
    good: set[str] = set()
    bad: list[tuple[int, float]] = []
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        if msg.value == b"bad":
            bad.append((msg.attempt, time.time()))
            raise RuntimeError(f"bad on attempt {msg.attempt}")
        with lock:
            good.add(msg.text())

    with KafkaBroker(conf) as broker, running_queue(Queue(conf, handle, retry=policy)):
        assert wait_for(lambda: len(good) == n, timeout=120), f"{len(good)} of {n}"
        finished = time.monotonic()
        assert wait_for(lambda: broker.stats()["pending"] == 0, timeout=5, interval=0.2), (
            "the main topic's commit point is held by a message in backoff"
        )
        lag_zero_after = time.monotonic() - finished
        assert len(bad) < 5, "the test needs the bad message still in its backoff"
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=90)
    attempts = [a for a, _ in bad]
    assert attempts == [1, 2, 3, 4, 5]
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(bad)]
    assert all(g >= 10.0 for g in gaps), f"a retry ran early: {gaps}"
    print(f"\nmain-topic lag 0 {lag_zero_after:.2f}s after the others; retry gaps {gaps}")


def spawn(conf: KqConf, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.brokerq_kafka.consumer_proc"]
    cmd += [conf.brokers[0], conf.topic, conf.group, str(out), "--attempts", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)


def lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        value, _, attempt = line.partition(" ")
        out.append((value, int(attempt)))
    return out


def test_kill_during_retry_backoff_continues_the_attempts(
    make_conf: ConfFactory, tmp_path: Path
) -> None:
    conf = make_conf(retry_tiers=[1.0, 5.0])  # as consumer_proc's
    out = tmp_path / "h.txt"
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(b"flaky")
        for i in range(50):
            pusher.push(str(i))
    opts = ("--fail", "flaky", "--until", "3", "--backoff", "5", "--max-attempts", "5")
    proc = spawn(conf, out, *opts)
    try:
        assert wait_for(lambda: ("flaky", 1) in lines(out), timeout=60)
        with KafkaBroker(conf) as broker:  # the retry record is written, the offset committed
            assert wait_for(
                lambda: (
                    {k: v for k, v in broker.stats().items() if k in COUNTS}
                    == {"pending": 0, "retrying": 1, "dead": 0, "paused": 0}
                )
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert ("flaky", 2) not in lines(out), "the backoff is 5s: attempt 2 came too soon"
        proc = spawn(conf, out, *opts, "--idle-exit", "12")
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    seen = lines(out)
    assert [a for v, a in seen if v == "flaky"] == [1, 2, 3], "the attempt restarted at 1"
    assert {v for v, _ in seen} == {"flaky", *(str(i) for i in range(50))}, "something lost"


def test_a_handler_that_kills_its_process_is_dead_lettered(
    make_conf: ConfFactory, tmp_path: Path
) -> None:
    max_attempts = 3
    conf = make_conf()
    out = tmp_path / "h.txt"
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(b"killer", key="x")
        for i in range(20):
            pusher.push(str(i), key="x")
    opts = ("--exit-on", "killer", "--max-attempts", str(max_attempts))
    broker = KafkaBroker(conf)
    deaths = 0
    try:
        for _ in range(max_attempts + 3):
            if broker.dead_letters():
                break
            proc = spawn(conf, out, *opts, "--idle-exit", "6")
            code = proc.wait(120)
            if code == 3:
                deaths += 1
        letters = broker.dead_letters()
        assert len(letters) == 1, f"not dead-lettered after {deaths} deaths"
        assert letters[0].message.value == b"killer"
        assert "WorkerCrashed" in letters[0].error
        # the process that dead-lettered it may have idled out first: one more for the rest
        assert spawn(conf, out, *opts, "--idle-exit", "8").wait(120) == 0
        assert wait_for(lambda: broker.stats()["pending"] == 0, timeout=30)
    finally:
        broker.close()
    runs = [a for v, a in lines(out) if v == "killer"]
    assert len(runs) <= max_attempts + 1, f"ran {len(runs)} times"
    assert {str(i) for i in range(20)} <= {v for v, _ in lines(out)}
    print(f"\nkiller ran {len(runs)} times (attempts {runs}); process deaths {deaths}")
