"""Offset tracking and key ordering without a broker: fast unit tests of the commit rule."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from confluent_kafka import Message as Record

from brokerq_kafka import KafkaSource, KqConf, _wire
from brokerq_kafka.tracker import PartitionTracker


def test_out_of_order_acks_commit_only_the_contiguous_prefix() -> None:
    t = PartitionTracker("t", 0)
    assert t.position() is None
    for off in range(100, 110):
        t.add(off)
    assert t.position() == 100
    for off in (101, 102, 105, 109):
        t.done(off)
    assert t.position() == 100  # 100 is still running: nothing past it may commit
    t.done(100)
    assert t.position() == 103
    t.done(103)
    t.done(104)
    assert t.position() == 106
    for off in (106, 107, 108):
        t.done(off)
    assert t.position() == 110
    assert t.pending_commit() == 110
    t.committed = 110
    assert t.pending_commit() is None


@pytest.fixture
def source() -> Iterator[KafkaSource]:
    """A source whose poll thread never starts (no broker needed); we feed it by hand."""
    src = KafkaSource(KqConf(brokers="127.0.0.1:1", topic="unit", group="g", key_ordering=True))
    idle = threading.Thread(target=lambda: None)
    idle.start()
    idle.join()
    src._thread = idle
    yield src
    src.close()
    src._consumer.close()


def feed(
    src: KafkaSource, tracker: PartitionTracker, items: list[tuple[int, bytes | None]]
) -> None:
    for offset, key in items:
        tracker.add(offset)
        record = Record(
            topic=tracker.topic,
            partition=tracker.partition,
            offset=offset,
            value=str(offset).encode(),
            key=key,
        )
        src._buffer.append((record, tracker))


def test_buffered_records_decode_like_wire_decode(source: KafkaSource) -> None:
    tracker = PartitionTracker("unit", 2)
    source._trackers[("unit", 2)] = tracker
    record = Record(
        topic="unit",
        partition=2,
        offset=7,
        value=b"payload",
        key=b"k",
        headers=[(_wire.ID, b"abc"), (_wire.ATTEMPT, b"2"), ("user", b"u")],
        timestamp=(1, 1_700_000_000_000),
    )
    plain = Record(topic="unit", partition=2, offset=8, value=b"x")
    tracker.add(7)
    tracker.add(8)
    source._buffer.extend([(record, tracker), (plain, tracker)])
    got = source.receive(0)
    assert got is not None and got.message == _wire.decode(record)
    assert got.message.id == "abc" and got.message.attempt == 2
    assert got.message.headers == {"user": "u"} and got.message.created_at == 1_700_000_000.0
    second = source.receive(0)
    assert second is not None and second.message.id == "unit/2/8"
    assert second.message == _wire.decode(plain)


def test_concurrent_acks_commit_the_prefix(source: KafkaSource) -> None:
    """8 threads ack 10k offsets in random order; the commit point is exact at every stage."""
    tracker = PartitionTracker("unit", 0)
    source._trackers[("unit", 0)] = tracker
    n = 10_000
    feed(source, tracker, [(o, None) for o in range(n)])
    deliveries = [source.receive(0) for _ in range(n)]
    assert all(d is not None for d in deliveries)
    held_back = deliveries[4321]
    rest = [d for d in deliveries if d is not held_back]
    random.shuffle(rest)
    chunks = [rest[i::8] for i in range(8)]
    threads = [threading.Thread(target=lambda c=c: [source.ack(d) for d in c]) for c in chunks]  # type: ignore[misc]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    source._flow_control()
    assert tracker.position() == 4321
    assert held_back is not None
    source.ack(held_back)
    source._flow_control()
    assert tracker.position() == n


def test_late_ack_after_revoke_is_ignored(source: KafkaSource) -> None:
    old = PartitionTracker("unit", 0)
    source._trackers[("unit", 0)] = old
    feed(source, old, [(0, None), (1, None)])
    first = source.receive(0)
    assert first is not None
    source._on_revoke(source._consumer, [])  # nothing revoked: buffer kept
    assert len(source._buffer) == 1
    source._drop({("unit", 0)})
    assert len(source._buffer) == 0
    new = PartitionTracker("unit", 0)
    source._trackers[("unit", 0)] = new  # reassigned: a fresh tracker
    source.ack(first)
    source._flow_control()
    assert new.position() is None  # the late ack went to the old tracker only


def test_key_ordering_serialises_a_key_and_keeps_order(source: KafkaSource) -> None:
    tracker = PartitionTracker("unit", 0)
    source._trackers[("unit", 0)] = tracker
    feed(source, tracker, [(0, b"a"), (1, b"a"), (2, b"b"), (3, b"a"), (4, None)])
    got = [source.receive(0) for _ in range(3)]
    assert [d.handle.offset for d in got if d] == [0, 2, 4]  # a#1, b, unkeyed; a#2 waits
    assert source.receive(0) is None
    a1 = got[0]
    assert a1 is not None
    source.retry(a1, 0.0, "boom")  # a retry keeps the key: a#2 must still wait
    again = source.receive(0)
    assert again is not None and again.handle.offset == 0 and again.message.attempt == 2
    assert source.receive(0) is None
    source.ack(again)
    nxt = source.receive(0)
    assert nxt is not None and nxt.handle.offset == 1
    source.release(nxt)  # handed back: comes out first, key still held
    back = source.receive(0)
    assert back is nxt
    source.ack(back)
    last = source.receive(0)
    assert last is not None and last.handle.offset == 3
