"""kq on 3 Kafka brokers (replication factor 3, min.insync.replicas 2): the partition leader is
killed with SIGKILL in the middle of a 50k push and of a 50k consume, and all three brokers are
restarted one by one under load.

Push side: acks=all + the idempotent producer, so 0 lost and 0 duplicates. Consume side: 0 lost;
duplicates only among messages handled but not yet committed when the leader died, so they are
bounded by the largest handled-minus-committed gap sampled during the run (the in-flight window).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from brokerq.message import Message
from brokerq_kafka import KafkaBroker, KqConf, Pusher
from tests.cluster.conftest import (
    KAFKA_CLUSTER,
    topic_state,
    wait_fully_replicated,
    wait_until,
)
from tests.contract import running
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

N = 50_000
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def coordinator_of(group: str) -> int:
    """The broker id coordinating ``group``."""
    from tests.cluster.conftest import admin

    (future,) = admin().describe_consumer_groups([group]).values()
    return int(future.result(timeout=10).coordinator.id)


def leader_of(topic: str, partition: int = 0) -> str:
    leader, _ = topic_state(topic)[partition]
    assert leader > 0, f"{topic}/{partition} has no leader"
    return f"kafka-c{leader}"


def read_all(topic: str, expect: int, idle: float = 10.0) -> Counter[str]:
    """Every value in ``topic`` (a fresh group from the start), until ``expect`` or idle."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA_CLUSTER,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: Counter[str] = Counter()
    last = time.monotonic()
    try:
        while sum(seen.values()) < expect and time.monotonic() - last < idle:
            for record in consumer.consume(10_000, 0.5):
                if record.error() is None:
                    seen[(record.value() or b"").decode()] += 1
                    last = time.monotonic()
    finally:
        consumer.close()
    return seen


def restore(services: Services, name: str, topic: str) -> None:
    services.restart(name)
    wait_fully_replicated(topic, 3, timeout=120)


def test_leader_killed_during_push(cluster_topic: str, services: Services) -> None:
    victim = leader_of(cluster_topic)
    try:
        with Pusher(KAFKA_CLUSTER, cluster_topic, push_timeout=60) as pusher:
            for i in range(N):
                pusher.push(str(i))
                if i == N // 3:
                    pusher.flush(60)  # the first third is on the brokers; then kill the leader
                    services.kill(victim)
            pusher.flush(120)  # raises DeliveryError if any message was not acknowledged
            assert pusher.failed == 0
        seen = read_all(cluster_topic, N)
    finally:
        restore(services, victim, cluster_topic)
    dups = sum(c - 1 for c in seen.values() if c > 1)
    missing = N - len(seen.keys() & {str(i) for i in range(N)})
    print(f"\npush 50k, leader {victim} killed at {N // 3}: missing={missing} duplicates={dups}")
    assert missing == 0
    assert dups == 0


class Handled:
    """Handler recording each value; sleeps 1 ms so 50k take a few seconds with 8 processors."""

    def __init__(self) -> None:
        self.seen: Counter[bytes] = Counter()
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        time.sleep(float(os.environ.get("BQ_TEST_HANDLER_SLEEP", "0.001")))
        with self.lock:
            self.seen[msg.value] += 1

    def unique(self) -> int:
        with self.lock:
            return len(self.seen)


@contextmanager
def in_flight_sampler(broker: KafkaBroker, handled: Handled) -> Iterator[list[int]]:
    """Samples handled - committed every 0.2 s (the last committed sum read while the
    coordinator is down); yields the list of samples."""
    from confluent_kafka import TopicPartition

    samples: list[int] = []
    stop = threading.Event()
    reader: Any = broker._client()

    def sample() -> None:
        parts = [TopicPartition(broker.conf.topic, p) for p in range(3)]
        committed: dict[int, int] = {}  # partition → the last committed offset we could read
        while not stop.wait(0.2):
            try:
                for tp in reader.committed(parts, timeout=1):
                    if tp.error is None and tp.offset >= 0:
                        committed[tp.partition] = tp.offset
            except Exception:  # the coordinator is down: commits are not landing either
                pass
            samples.append(handled.unique() - sum(committed.values()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(10)


def push_all(topic: str, n: int) -> None:
    with Pusher(KAFKA_CLUSTER, topic) as pusher:
        for i in range(n):
            pusher.push(str(i))
        pusher.flush(120)


def conf(topic: str) -> KqConf:
    return KqConf(
        brokers=KAFKA_CLUSTER,
        topic=topic,
        group=f"g-{topic}",
        offset="first",
        processors=8,
        commit_interval=0.2,
        client_config=dict(FAST_GROUP),
    )


def test_leader_killed_during_consume(cluster_topic: str, services: Services) -> None:
    """The victim leads a partition of the topic and is also the group's coordinator (the
    harder case: the consumer's session times out, its partitions are lost and reassigned)."""
    push_all(cluster_topic, N)
    broker = KafkaBroker(conf(cluster_topic))
    handled = Handled()
    victim = "?"
    try:
        with (
            in_flight_sampler(broker, handled) as samples,
            running(broker, handled, concurrency=8),
        ):
            wait_until(lambda: handled.unique() >= N // 3, 120, "no progress before the kill")
            coordinator = coordinator_of(broker.conf.group)
            leaders = {leader for leader, _ in topic_state(cluster_topic).values()}
            assert coordinator in leaders, (coordinator, leaders)
            victim = f"kafka-c{coordinator}"
            services.kill(victim)
            wait_until(lambda: handled.unique() >= N, 240, f"only {handled.unique()} of {N}")
            time.sleep(3.0)  # late duplicates would show here
    finally:
        broker.close()
        if victim != "?":
            restore(services, victim, cluster_topic)
    dups = sum(c - 1 for c in handled.seen.values() if c > 1)
    window = max(samples, default=0)
    print(
        f"\nconsume 50k, 8 processors, leader {victim} killed at {N // 3}: "
        f"missing={N - handled.unique()} duplicates={dups} in-flight window={window}"
    )
    assert handled.unique() == N
    assert dups <= window, f"{dups} duplicates, more than the {window} in flight"


def test_rolling_restart_under_load(cluster_topic: str, services: Services) -> None:
    pushed: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:  # ~2.5k/s for as long as the restarts take
        try:
            with Pusher(KAFKA_CLUSTER, cluster_topic, push_timeout=60) as pusher:
                i = 0
                while not stop.is_set() and i < 400_000:
                    for _ in range(250):
                        pusher.push(str(i))
                        i += 1
                    time.sleep(0.1)
                pusher.flush(120)
                pushed.append(i)
        except BaseException as e:
            errors.append(e)

    broker = KafkaBroker(conf(cluster_topic))
    handled = Handled()
    producer = threading.Thread(target=produce)
    try:
        with running(broker, handled, concurrency=8):
            producer.start()
            wait_until(lambda: handled.unique() >= 2000, 60, "no progress before the restarts")
            for name in ("kafka-c1", "kafka-c2", "kafka-c3"):
                restore(services, name, cluster_topic)
            stop.set()
            producer.join(180)
            assert not errors, errors
            total = pushed[0]
            wait_until(lambda: handled.unique() >= total, 240, f"{handled.unique()} of {total}")
    finally:
        stop.set()
        broker.close()
    dups = sum(c - 1 for c in handled.seen.values() if c > 1)
    print(f"\nrolling restart of 3 brokers under load: pushed={total} duplicates={dups}")
    assert handled.unique() == total
