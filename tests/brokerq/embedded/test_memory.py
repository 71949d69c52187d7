"""MemoryBroker specifics: join(), stats, dead-letter admin, release order, thread safety."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from brokerq.embedded import EmbeddedConf, MemoryBroker
from brokerq.message import Message
from tests.contract import running


def test_join_waits_for_every_job_and_its_retries(memory_broker: MemoryBroker) -> None:
    seen: list[int] = []

    def handler(msg: Message) -> None:
        seen.append(msg.attempt)
        if msg.attempt == 1:
            raise RuntimeError("first try fails")

    memory_broker.producer().push(b"job")
    with running(memory_broker, handler):
        memory_broker.join(10)
        assert seen == [1, 2]
    assert memory_broker.stats() == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_join_times_out_without_a_worker(memory_broker: MemoryBroker) -> None:
    memory_broker.producer().push(b"nobody home")
    with pytest.raises(TimeoutError, match="pending"):
        memory_broker.join(0.1)


def test_stats_dead_letters_retry_and_purge(memory_broker: MemoryBroker) -> None:
    memory_broker.producer().push(b"a")
    memory_broker.delay_producer().delay(b"later", 60)
    assert memory_broker.stats() == {"pending": 1, "delayed": 1, "in_flight": 0, "dead": 0}
    with memory_broker.source() as source:
        delivery = source.receive(1)
        assert delivery is not None
        assert memory_broker.stats()["in_flight"] == 1
        source.dead(delivery, "ValueError: nope")
    (dead,) = memory_broker.dead_letters()
    assert (dead.message.value, dead.error, dead.ref) == (b"a", "ValueError: nope", dead.message.id)
    assert memory_broker.retry_dead([dead.ref]) == 1
    assert memory_broker.stats() == {"pending": 1, "delayed": 1, "in_flight": 0, "dead": 0}
    with memory_broker.source() as source:
        delivery = source.receive(1)
        assert delivery is not None and delivery.message.attempt == 1
        source.dead(delivery, "again")
    assert memory_broker.purge_dead() == 1
    assert memory_broker.dead_letters() == []


def test_release_keeps_place_and_attempt(memory_broker: MemoryBroker) -> None:
    producer = memory_broker.producer()
    ids = producer.push_many([b"1", b"2", b"3"])
    with memory_broker.source() as source:
        first = source.receive(1)
        assert first is not None and first.message.id == ids[0]
        source.release(first)
        again = [source.receive(1) for _ in ids]
        assert [d.message.id for d in again if d] == ids
        assert all(d is not None and d.message.attempt == 1 for d in again)


def test_closing_a_source_gives_back_unsettled_deliveries(memory_broker: MemoryBroker) -> None:
    memory_broker.producer().push(b"x")
    source = memory_broker.source()
    assert source.receive(1) is not None
    source.close()
    assert memory_broker.stats()["pending"] == 1


def test_revoke_and_close(memory_broker: MemoryBroker) -> None:
    delayed = memory_broker.delay_producer()
    job = delayed.delay(b"x", 30)
    assert delayed.revoke(job) is True
    assert delayed.revoke(job) is False
    memory_broker.close()
    memory_broker.close()
    with memory_broker.source() as source:
        assert source.receive(0.1) is None


def test_config_section_is_shared_with_sqlite() -> None:
    broker = MemoryBroker.from_config({"backend": "memory", "path": "ignored.db", "queue": "q"})
    assert isinstance(broker, MemoryBroker) and broker.queue == "q"
    assert MemoryBroker.config_model is EmbeddedConf


def test_thread_safety_smoke(memory_broker: MemoryBroker) -> None:
    """8 producer threads and 8 handler threads: every job handled exactly once."""
    per_thread, threads = 500, 8
    counts: Counter[bytes] = Counter()
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        if msg.attempt == 1 and msg.value.endswith(b"7"):
            raise RuntimeError("every tenth fails once")
        with lock:
            counts[msg.value] += 1

    def produce(t: int) -> None:
        producer = memory_broker.producer()
        delayed = memory_broker.delay_producer()
        for i in range(per_thread):
            if i % 50 == 0:
                delayed.delay(f"{t}-{i}", 0.01)
            else:
                producer.push(f"{t}-{i}")

    with running(memory_broker, handler, concurrency=8):
        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        start = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        memory_broker.join(60)
    assert len(counts) == per_thread * threads
    assert set(counts.values()) == {1}
    assert memory_broker.dead_letters() == []
    assert time.monotonic() - start < 60
