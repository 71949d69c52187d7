"""MemoryBroker specifics: join(), stats, dead-letter admin, release order, thread safety."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from pydantic import ValidationError

from brokerq.embedded import EmbeddedConf, MemoryBroker
from brokerq.message import Message
from brokerq.outcome import Failure
from tests.brokerq.embedded.conftest import counts
from tests.contract import running, wait_for


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
    assert counts(memory_broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_join_times_out_without_a_worker(memory_broker: MemoryBroker) -> None:
    memory_broker.producer().push(b"nobody home")
    with pytest.raises(TimeoutError, match="pending"):
        memory_broker.join(0.1)


def test_stats_dead_letters_retry_and_purge(memory_broker: MemoryBroker) -> None:
    memory_broker.producer().push(b"a")
    memory_broker.delay_producer().delay(b"later", 60)
    assert counts(memory_broker.stats()) == {"pending": 1, "delayed": 1, "in_flight": 0, "dead": 0}
    with memory_broker.source() as source:
        delivery = source.receive(1)
        assert delivery is not None
        assert memory_broker.stats()["in_flight"] == 1
        source.dead(delivery, Failure("ValueError", "nope", "Traceback ..."))
    (dead,) = memory_broker.dead_letters()
    assert (dead.message.value, dead.error, dead.ref) == (b"a", "ValueError: nope", dead.message.id)
    assert isinstance(dead.error, Failure)
    assert (dead.error.type, dead.traceback) == ("ValueError", "Traceback ...")
    assert memory_broker.dead_letters(refs=["other"]) == []
    assert memory_broker.retry_dead([dead.ref]) == 1
    assert counts(memory_broker.stats()) == {"pending": 1, "delayed": 1, "in_flight": 0, "dead": 0}
    with memory_broker.source() as source:
        delivery = source.receive(1)
        assert delivery is not None and delivery.message.attempt == 1
        source.dead(delivery, Failure("ValueError", "again"))
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
    with memory_broker.source() as again:
        delivery = again.receive(1)
        assert delivery is not None
        assert delivery.message.attempt == 2, "an unsettled delivery counts as an attempt"
    assert MemoryBroker.capabilities.counts_redeliveries


def test_a_job_never_settled_ends_dead_as_worker_crashed(memory_broker: MemoryBroker) -> None:
    """Handlers abandoned at every shutdown: after max_attempts the job is a dead letter."""
    memory_broker.producer().push(b"hangs")
    for _ in range(3):
        source = memory_broker.source()
        assert source.receive(5) is not None
        source.close()
    seen: list[int] = []
    with running(memory_broker, lambda m: seen.append(m.attempt)):
        assert wait_for(lambda: len(memory_broker.dead_letters()) == 1, 10)
    assert seen == []
    (dead,) = memory_broker.dead_letters()
    assert isinstance(dead.error, Failure)
    assert dead.error.type == "WorkerCrashed" and dead.message.attempt == 4


def test_priorities_lower_first_kept_across_retry_and_redrive(
    memory_broker: MemoryBroker,
) -> None:
    producer = memory_broker.producer()
    producer.push(b"p100", priority=100)
    producer.push(b"p0", priority=0)
    producer.push(b"default")  # the section's priority: 2
    with memory_broker.source() as source:
        got = [source.receive(1) for _ in range(3)]
        assert [d.message.value for d in got if d] == [b"p0", b"default", b"p100"]
        first, second, third = (d for d in got if d)
        source.retry(first, 0.0, Failure("RuntimeError", "again"))
        source.retry(third, 0.0, Failure("RuntimeError", "again"))
        source.ack(second)
        memory_broker.producer().push(b"p50", priority=50)
        got = [source.receive(1) for _ in range(3)]
        assert [d.message.value for d in got if d] == [b"p0", b"p50", b"p100"]
        assert [d.message.attempt for d in got if d] == [2, 1, 2]
        for d in got:
            assert d is not None
            source.dead(d, Failure("RuntimeError", "dead"))
    assert memory_broker.retry_dead() == 3
    with memory_broker.source() as source:
        got = [source.receive(1) for _ in range(3)]
        assert [d.message.value for d in got if d] == [b"p0", b"p50", b"p100"]


def test_priority_outside_beanstalkd_range_is_refused(memory_broker: MemoryBroker) -> None:
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ValueError, match="priority"):
            memory_broker.producer().push(b"x", priority=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority"):
            memory_broker.delay_producer().delay(b"x", 1, priority=bad)  # type: ignore[arg-type]
    memory_broker.producer().push(b"x", priority=2**32 - 1)


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
    broker = MemoryBroker.from_config({"backend": "memory", "queue": "q"})
    assert isinstance(broker, MemoryBroker) and broker.queue == "q"
    assert MemoryBroker.config_model is EmbeddedConf


def test_file_settings_beside_backend_memory_are_an_error() -> None:
    for extra in ({"path": "jobs.db"}, {"synchronous": "normal"}):
        with pytest.raises(ValidationError, match="not used by backend: memory"):
            MemoryBroker.from_config({"backend": "memory", **extra})


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
