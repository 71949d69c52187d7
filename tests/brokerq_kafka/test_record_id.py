"""Header-less kq records (issue 16): what push writes by default and what a plain producer
(go-queue's pusher) writes get ``topic/partition/offset`` as their id, the same on every
redelivery, carried on by retries and dead letters."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq_kafka import KafkaBroker, Pusher, Queue
from tests.brokerq_kafka.test_kafka import ConfFactory, read_topic, running_queue
from tests.contract import wait_for

pytestmark = pytest.mark.integration


def test_default_push_writes_no_header_and_with_id_writes_one(make_conf: ConfFactory) -> None:
    conf = make_conf()
    with Pusher(conf.brokers, conf.topic) as plain, Pusher(conf.brokers, conf.topic) as hdrs:
        plain.push(b"plain")
        hdrs.push(b"user", headers={"tenant": "acme"})
    with Pusher(conf.brokers, conf.topic, with_id=True) as ids:
        ids.push(b"id")
    records = {r.value(): r for r in read_topic(conf.brokers[0], conf.topic, 3)}
    assert records[b"plain"].headers() is None
    assert records[b"user"].headers() == [("tenant", b"acme")]  # the caller's, no id
    assert [name for name, _ in records[b"id"].headers()] == ["brokerq-id"]


def test_a_plain_producers_record_gets_its_coordinates_as_id_and_runs(
    make_conf: ConfFactory,
) -> None:
    conf = make_conf()
    raw = Producer({"bootstrap.servers": conf.brokers[0]})
    before = time.time()
    for value in (b"a", b"b"):
        raw.produce(conf.topic, value, partition=1)  # go-queue's pusher: a plain value
    assert raw.flush(10) == 0
    seen: list[Message] = []
    with running_queue(Queue(conf, seen.append)):
        assert wait_for(lambda: len(seen) == 2, timeout=60)
    by_value = {m.value: m for m in seen}
    assert by_value[b"a"].id == f"{conf.topic}/1/0"
    assert by_value[b"b"].id == f"{conf.topic}/1/1"
    assert all(m.attempt == 1 and m.headers == {} for m in seen)
    assert all(before - 5 <= m.created_at <= time.time() + 5 for m in seen)  # record time


def test_the_id_is_the_same_when_the_record_is_delivered_again(make_conf: ConfFactory) -> None:
    conf = make_conf()
    with Pusher(conf.brokers, conf.topic) as pusher:
        pusher.push(b"again", key=b"k")
    broker = KafkaBroker(conf)
    try:
        first = broker.source()
        got = first.receive(30)
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            got = first.receive(1)
        assert got is not None
        first.close()  # not acked: the next member of the group gets it again
        second = broker.source()
        again = second.receive(30)
        deadline = time.monotonic() + 30
        while again is None and time.monotonic() < deadline:
            again = second.receive(1)
        assert again is not None
        assert again.message.value == b"again"
        assert again.message.id == got.message.id
        assert again.message.id.startswith(f"{conf.topic}/")
        second.ack(again)
        second.close()
    finally:
        broker.close()


def test_retries_and_dead_letters_keep_the_id_and_retry_dead_runs_it_again(
    make_conf: ConfFactory,
) -> None:
    policy = RetryPolicy(max_attempts=2, backoff=0.05, max_backoff=0.1, jitter=False)
    conf = make_conf(retry=policy)
    with Pusher(conf.brokers, conf.topic, sync=True) as pusher:
        pusher.push(b"flaky", key=b"k")
    (record,) = read_topic(conf.brokers[0], conf.topic, 1)
    coords = f"{conf.topic}/{record.partition()}/{record.offset()}"
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    failing = threading.Event()
    failing.set()

    def handle(msg: Message) -> Any:
        with lock:
            seen.append((msg.id, msg.attempt))
        if failing.is_set():
            raise RuntimeError(f"attempt {msg.attempt}")

    broker = KafkaBroker(conf)
    try:
        with running_queue(Queue(conf, handle)):
            assert wait_for(lambda: len(broker.dead_letters()) == 1, timeout=60)
            assert seen == [(coords, 1), (coords, 2)]  # the retry record kept the id
            (dead,) = broker.dead_letters()
            assert dead.message.id == coords
            assert broker.dead_letters(refs=[coords]) == [dead]  # found by its id
            failing.clear()
            assert broker.retry_dead([coords]) == 1
            assert wait_for(lambda: len(seen) == 3, timeout=60)
        assert seen[2] == (coords, 1)  # back on the topic: same id, attempt 1
        assert broker.dead_letters() == []
    finally:
        broker.close()
