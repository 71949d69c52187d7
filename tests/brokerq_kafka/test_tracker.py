"""The commit rule and crash accounting without a broker: PartitionTracker, OffsetBook, and
the poller's admission of records (its commits replaced by a recorder)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Message as Record

from brokerq.broker import Delivery
from brokerq.dispatch import Dispatcher
from brokerq.message import Message
from brokerq_kafka import KqConf, _wire
from brokerq_kafka._writer import DurableWriter
from brokerq_kafka.keyholds import KeyHolds
from brokerq_kafka.offsets import (
    METADATA_LIMIT,
    RESERVE_AHEAD,
    Handle,
    OffsetBook,
    decode_metadata,
    encode_metadata,
)
from brokerq_kafka.poller import Poller
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


def test_concurrent_settles_commit_the_prefix() -> None:
    """8 threads settle 10k offsets in random order; the commit point is exact throughout."""
    book = OffsetBook()
    book.assign("t", 0, -1, None)
    state = book.states[("t", 0)]
    n = 10_000
    for o in range(n):
        state.tracker.add(o)
    handles = [Handle(state, o, None) for o in range(n)]
    held_back = handles.pop(4321)
    random.shuffle(handles)

    def settle_all(chunk: list[Handle]) -> None:
        for h in chunk:
            book.settle(h)

    threads = [threading.Thread(target=settle_all, args=(handles[i::8],)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    book.apply_done()
    assert state.tracker.position() == 4321
    book.settle(held_back)
    book.apply_done()
    assert state.tracker.position() == n


def test_metadata_round_trip_and_limit() -> None:
    text = encode_metadata(1200, {1005: 2, 1010: 1}, clean=False)
    assert decode_metadata(text) == (1200, {1005: 2, 1010: 1}, False)
    assert decode_metadata(encode_metadata(None, {}, clean=True)) == (None, {}, True)
    assert decode_metadata("brokerq-done:3-5") is None and decode_metadata(None) is None
    assert decode_metadata("bq1 r=x") is None
    big = encode_metadata(10**12, {10**12 + i: 3 for i in range(10_000)}, clean=False)
    assert len(big) <= METADATA_LIMIT
    assert decode_metadata(big) is not None


def _hold(book: OffsetBook, offsets: range) -> Any:
    state = next(iter(book.states.values()))
    for o in offsets:
        state.tracker.add(o)
        state.held.append((Delivery(Message(b""), Handle(state, o, None)), None))
    return state


def test_reservation_before_anything_goes_out() -> None:
    book = OffsetBook()
    book.assign("t", 0, -1, None)
    state = _hold(book, range(0, 5))
    assert book.release(state) == []  # nothing reserved yet
    assert book.needs_commit(state) and state.reserved == RESERVE_AHEAD
    points = book.commit_points([state], clean=False, changed_only=False)
    assert points[0][1] == 0 and decode_metadata(points[0][2]) == (RESERVE_AHEAD, {}, False)
    assert [d.handle.offset for d, _ in book.release(state)] == [0, 1, 2, 3, 4]
    _hold(book, range(5, RESERVE_AHEAD + 2))
    assert not book.needs_commit(state)
    assert len(book.release(state)) == RESERVE_AHEAD - 4  # up to the reservation
    assert book.needs_commit(state)  # the next one needs a new reservation


def test_unclean_owner_opens_a_careful_window_with_counts() -> None:
    book = OffsetBook()
    book.assign("t", 0, 10, encode_metadata(14, {12: 2, 3: 9}, clean=False))
    state = book.states[("t", 0)]
    assert state.careful_end == 14 and state.counts == {12: 2}  # below the commit: dropped
    assert book.crashes(state, 12) == 2 and book.crashes(state, 11) == 0
    _hold(book, range(10, 17))
    out = []
    while True:  # one careful record at a time, each after a commit naming it
        if book.needs_commit(state):
            (point,) = book.commit_points([state], clean=False, changed_only=False)
            _, counts, clean = decode_metadata(point[2]) or (None, {}, True)
            assert not clean
            if state.careful_out is not None:
                assert counts[state.careful_out] == state.counts.get(state.careful_out, 0) + 1
        got = book.release(state)
        if not got:
            break
        assert len(got) == 1 or state.careful_end is None
        out += [d.handle.offset for d, _ in got]
        if state.careful_out is not None:
            book.settle(got[0][0].handle)
            book.apply_done()
    assert out == list(range(10, 17))
    assert state.careful_end is None  # past the window: normal again
    assert 12 not in state.counts  # settled: forgotten


def test_clean_owner_carries_counts_without_a_window() -> None:
    book = OffsetBook()
    book.assign("t", 0, 10, encode_metadata(14, {12: 2}, clean=True))
    state = book.states[("t", 0)]
    assert state.careful_end is None and state.counts == {12: 2}
    state.tracker.add(10)
    state.careful_out = 10
    (point,) = book.commit_points([state], clean=True, changed_only=False)
    assert decode_metadata(point[2]) == (None, {12: 2}, True)  # clean: no bump
    (point,) = book.commit_points([state], clean=False, changed_only=False)
    assert decode_metadata(point[2]) == (None, {10: 1, 12: 2}, False)


@pytest.fixture
def poller() -> Iterator[Poller]:
    """A poller whose thread never runs and whose commits always succeed."""
    conf = KqConf(brokers="127.0.0.1:1", topic="unit", group="g", key_ordering=True)
    d: Dispatcher[Any] = Dispatcher(100, key_of=lambda x: x.message.key)
    p = Poller(conf, d, DurableWriter(conf), KeyHolds(d.done))
    p._commit = lambda *a, **k: True  # type: ignore[method-assign]
    p.book.assign("unit", 2, -1, None)
    yield p
    p.consumer.close()


def test_admitted_records_decode_like_wire_decode(poller: Poller) -> None:
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
    poller._accept([record, plain])
    got = poller.dispatcher.get(0)
    assert got is not None and got.message == _wire.decode(record).message
    assert got.message.id == "abc" and got.message.attempt == 2
    assert got.message.headers == {"user": "u"} and got.message.created_at == 1_700_000_000.0
    second = poller.dispatcher.get(0)
    assert second is not None and second.message.id == "unit/2/8"


def test_key_lanes_and_retry_holds(poller: Poller) -> None:
    recs = [(0, b"a"), (1, b"a"), (2, b"b"), (3, None)]
    poller._accept(
        [Record(topic="unit", partition=2, offset=o, value=b"v", key=k) for o, k in recs]
    )
    d = poller.dispatcher
    got = d.get_many(10, 0)
    assert [x.handle.offset for x in got] == [0, 2, 3]  # a#2 waits behind a#1
    a1 = got[0]
    poller.holds.hold(b"a", a1, 0.0)  # a#1 went to a retry topic: the key stays held
    poller.book.settle(a1.handle)
    assert d.get(0) is None
    retry = Record(
        topic="unit.retry.1",
        partition=2,
        offset=0,
        value=b"v",
        key=b"a",
        headers=[(_wire.ID, a1.message.id.encode()), (_wire.ATTEMPT, b"2")],
    )
    poller.book.assign("unit.retry.1", 2, -1, None)
    poller._accept([retry])
    again = d.get(0)
    assert again is not None and again.message.attempt == 2  # the retry goes first
    assert d.get(0) is None  # a#2 still waits
    d.done(again)  # the retry settled: the key moves on
    nxt = d.get(0)
    assert nxt is not None and nxt.handle.offset == 1
