"""kq against a real broker: exactly-once on a clean run, key ordering, DLQ, poison, pushers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from brokerq.errors import DeliveryError, MessageTooLarge
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq_kafka import AsyncPusher, KafkaBroker, KqConf, Pusher, Queue
from tests.contract import wait_for

pytestmark = pytest.mark.integration

ConfFactory = Callable[..., KqConf]


@contextmanager
def running_queue(queue: Queue) -> Iterator[Queue]:
    thread = threading.Thread(target=queue.start, daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        queue.stop()
        thread.join(30)
        assert not thread.is_alive(), "queue did not stop"


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` from the beginning (a throwaway group, no commits)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in c.consume(1000, 0.5) if m.error() is None]
    c.close()
    return out


def test_stream_is_consumed_exactly_once(make_conf: ConfFactory) -> None:
    n = 50_000
    conf = make_conf(processors=8)
    with Pusher(conf.brokers, conf.topic) as pusher:
        for i in range(n):
            pusher.push(str(i), key=None if i % 2 else f"k{i % 64}")
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        with lock:
            seen[msg.text()] += 1

    with running_queue(Queue(conf, handle)):
        assert wait_for(lambda: len(seen) >= n, timeout=90), f"{len(seen)} of {n} handled"
        time.sleep(1.0)
    assert set(seen) == {str(i) for i in range(n)}
    dups = {k: c for k, c in seen.items() if c > 1}
    assert not dups, f"{len(dups)} duplicates on a clean run"
    # everything committed: the group has nothing pending
    with KafkaBroker(conf) as broker:
        assert broker.stats()["pending"] == 0


def test_key_ordering_keeps_per_key_order(make_conf: ConfFactory) -> None:
    n, keys = 4000, 16
    conf = make_conf(processors=8, key_ordering=True)
    with Pusher(conf.brokers, conf.topic) as pusher:
        for i in range(n):
            pusher.push(f"{i % keys}:{i // keys}", key=f"key{i % keys}")
    order: dict[str, list[int]] = defaultdict(list)
    running: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        key, seq = msg.text().split(":")
        with lock:
            if key in running:
                overlaps.append(key)
            running.add(key)
        time.sleep(0.0005)
        with lock:
            running.discard(key)
            order[key].append(int(seq))

    with running_queue(Queue(conf, handle)):
        assert wait_for(lambda: sum(map(len, order.values())) >= n, timeout=90)
    assert not overlaps, f"same key ran concurrently: {overlaps[:5]}"
    for key, seqs in order.items():
        assert seqs == sorted(seqs), f"key {key} out of order"
        assert len(seqs) == n // keys


def test_failing_handler_retries_then_dead_letters_with_headers(make_conf: ConfFactory) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.05, max_backoff=0.1, jitter=False)
    conf = make_conf(retry=policy)
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(b"bad", key="kk", headers={"tenant": "acme"})
        pusher.push(b"good")
    attempts: list[int] = []

    def handle(msg: Message) -> None:
        if msg.value == b"bad":
            attempts.append(msg.attempt)
            raise ValueError(f"cannot handle attempt {msg.attempt}")

    broker = KafkaBroker(conf)
    with running_queue(Queue(conf, handle)):
        assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=60)
    assert attempts == [1, 2, 3]
    (record,) = read_topic(conf.brokers[0], conf.dead_letter_topic, 1)
    headers = {k: v.decode() for k, v in record.headers()}
    assert record.value() == b"bad" and record.key() == b"kk"
    assert headers["tenant"] == "acme"
    assert headers["brokerq-error"] == "ValueError: cannot handle attempt 3"
    assert headers["brokerq-topic"] == conf.topic
    assert headers["brokerq-attempt"] == "3"
    assert int(headers["brokerq-partition"]) in range(4)
    assert int(headers["brokerq-offset"]) >= 0
    (dead,) = broker.dead_letters()
    assert dead.message.headers == {"tenant": "acme"} and dead.message.attempt == 3
    stats = broker.stats()
    assert {k: stats[k] for k in ("pending", "retrying", "dead", "paused")} == {
        "pending": 0,
        "retrying": 0,
        "dead": 1,
        "paused": 0,
    }
    assert stats["oldest_age_seconds"] == 0 and stats["lag:0"] == 0
    broker.close()


def test_poison_record_goes_to_dead_letters_at_once(make_conf: ConfFactory) -> None:
    conf = make_conf()
    raw = Producer({"bootstrap.servers": conf.brokers[0]})
    raw.produce(conf.topic, b"poison", b"p", headers=[("h", b"\xff\xfe")], partition=0)
    raw.produce(conf.topic, b"after", b"p", partition=0)
    assert raw.flush(10) == 0
    seen: list[bytes] = []
    broker = KafkaBroker(conf)
    with running_queue(Queue(conf, lambda m: seen.append(m.value))):
        assert wait_for(lambda: seen == [b"after"] and len(broker.dead_letters()) == 1)
    (dead,) = broker.dead_letters()
    assert dead.message.value == b"poison"
    assert "undecodable" in dead.error
    assert broker.stats()["pending"] == 0
    broker.close()


def test_lag_reports_unfinished_messages(make_conf: ConfFactory) -> None:
    conf = make_conf()
    with Pusher(conf.brokers, conf.topic) as pusher:
        for i in range(10):
            pusher.push(str(i), key="same")
    with KafkaBroker(conf) as broker, broker.source() as source:
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            d = source.receive(0.5)
            if d is not None:
                got.append(d)
        assert len(got) == 10
        assert wait_for(lambda: sum(source.lag().values()) == 10, timeout=10)
        for d in got[5:]:
            source.ack(d)  # later offsets done, earlier not: nothing may commit
        time.sleep(1.5)
        assert sum(source.lag().values()) == 10
        for d in got[:5]:
            source.ack(d)
        assert wait_for(lambda: sum(source.lag().values()) == 0, timeout=10)


def test_pusher_failures_are_never_silent(make_conf: ConfFactory) -> None:
    conf = make_conf()
    # a topic that does not exist and may not be created: every delivery fails
    opts: dict[str, Any] = {
        "config": {"message.timeout.ms": 1500, "allow.auto.create.topics": False}
    }
    pusher = Pusher(conf.brokers, f"missing-{conf.topic}", **opts)
    pusher.push(b"a")
    pusher.push(b"b")
    with pytest.raises(DeliveryError, match="2 message"):
        pusher.flush(10)
    failures: list[tuple[Message, DeliveryError]] = []
    taken = Pusher(
        conf.brokers, f"missing-{conf.topic}", on_error=lambda m, e: failures.append((m, e)), **opts
    )
    taken.push(b"c", headers={"x": "1"})
    taken.close()  # the callback took the failure: close does not raise
    assert [m.value for m, _ in failures] == [b"c"]
    assert "timed out" in str(failures[0][1])
    pusher.close()


def test_oversized_message_is_refused(make_conf: ConfFactory) -> None:
    conf = make_conf()
    with Pusher(conf.brokers, conf.topic) as pusher, pytest.raises(MessageTooLarge):
        pusher.push(b"x" * 2_000_000)


def test_async_pusher(make_conf: ConfFactory) -> None:
    conf = make_conf()

    async def go() -> None:
        async with AsyncPusher(conf.brokers, conf.topic, sync=True) as sync_pusher:
            await sync_pusher.push(b"s1")
        async with AsyncPusher(conf.brokers, conf.topic) as pusher:
            for i in range(100):
                await pusher.push(f"a{i}")
            await pusher.flush(10)

    asyncio.run(go())
    assert len(read_topic(conf.brokers[0], conf.topic, 101)) == 101
