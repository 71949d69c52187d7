"""The Producer / Source / DelayProducer contract, written once and run against every backend.

A backend's test module (ours or a third party's) subclasses ``ProducerContract``,
``FateContract`` (and ``DelayContract`` if it can delay) and provides a ``broker`` fixture
returning a fresh, isolated ``Broker``. Cases that need a capability run only where the
Broker's ``capabilities`` declare it, and test exactly that. Needs pytest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from brokerq.batch import BatchConfig, BatchHandler
from brokerq.broker import Broker, Delivery
from brokerq.errors import BatchFailed, Drop, DuplicateJob, NotSupported, Retry
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.testing.run import consuming_in_thread
from brokerq.testing.run import running as _running
from brokerq.worker import Worker

__all__ = [
    "FAST_RETRY",
    "DelayContract",
    "FateContract",
    "ProducerContract",
    "Recorder",
    "consuming_in_thread",
    "running",
    "wait_for",
]

FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.05, max_backoff=0.2, jitter=False)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or timeout; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def running(broker: Broker, handler: Callable[..., Any], **options: Any) -> Iterator[Worker]:
    """``brokerq.testing.running`` with the contract's fast retry policy by default."""
    options.setdefault("retry", FAST_RETRY)
    with _running(broker, handler, **options) as worker:
        yield worker


class Recorder:
    """A thread-safe handler that records every message it sees."""

    def __init__(self, fail: Callable[[Message], BaseException | None] = lambda m: None) -> None:
        self.seen: list[Message] = []
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.fail = fail

    def __call__(self, msg: Message) -> None:
        with self.lock:
            self.seen.append(msg)
            self.times.append(time.time())
        error = self.fail(msg)
        if error is not None:
            raise error

    def values(self) -> list[bytes]:
        with self.lock:
            return [m.value for m in self.seen]


class ProducerContract:
    """push → consume → ack, failure → retry → dead letter, release, idle, close."""

    def test_push_consume_ack_leaves_nothing(self, broker: Broker) -> None:
        with broker.producer() as producer:
            for i in range(20):
                producer.push(f"m{i}".encode(), key=f"k{i % 3}", headers={"n": str(i)})
            producer.flush(30)
        rec = Recorder()
        with running(broker, rec, concurrency=4):
            assert wait_for(lambda: len(rec.seen) >= 20), f"only {len(rec.seen)} of 20 handled"
        assert sorted(rec.values()) == sorted(f"m{i}".encode() for i in range(20))
        by_value = {m.value: m for m in rec.seen}
        assert by_value[b"m4"].key == b"k1"
        assert by_value[b"m4"].headers.get("n") == "4"
        assert all(m.attempt == 1 for m in rec.seen)
        assert len({m.id for m in rec.seen}) == 20
        # Everything was acked: a second consumer finds nothing.
        again = Recorder()
        with running(broker, again):
            time.sleep(2.0)
        assert again.seen == []

    def test_failure_retries_then_dead_letters(self, broker: Broker) -> None:
        with broker.producer() as producer:
            producer.push(b"poison")
            producer.flush(30)
        rec = Recorder(fail=lambda m: RuntimeError(f"boom {m.attempt}"))
        with running(broker, rec):
            assert wait_for(lambda: len(broker.dead_letters()) == 1), "not dead-lettered"
        assert [m.attempt for m in rec.seen] == [1, 2, 3]
        (dead,) = broker.dead_letters()
        assert dead.message.value == b"poison"
        assert "RuntimeError: boom 3" in dead.error

    def test_drop_dead_letters_at_once(self, broker: Broker) -> None:
        with broker.producer() as producer:
            producer.push(b"drop-me")
            producer.flush(30)
        rec = Recorder(fail=lambda m: Drop("not wanted"))
        with running(broker, rec):
            assert wait_for(lambda: len(broker.dead_letters()) == 1)
        assert len(rec.seen) == 1
        assert "not wanted" in broker.dead_letters()[0].error

    def test_retry_signal_then_success(self, broker: Broker) -> None:
        with broker.producer() as producer:
            producer.push(b"again")
            producer.flush(30)
        rec = Recorder(fail=lambda m: Retry(after=0.1) if m.attempt == 1 else None)
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) >= 2)
            time.sleep(0.5)
        assert [m.attempt for m in rec.seen] == [1, 2]
        assert rec.times[1] - rec.times[0] >= 0.1
        assert broker.dead_letters() == []

    def test_released_delivery_comes_back(self, broker: Broker) -> None:
        with broker.producer() as producer:
            producer.push(b"back")
            producer.flush(30)
        with broker.source() as source:
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                first = source.receive(0.5)
            assert first is not None
            source.release(first)
            second = None
            deadline = time.monotonic() + 30
            while second is None and time.monotonic() < deadline:
                second = source.receive(0.5)
            assert second is not None
            assert second.message.id == first.message.id
            assert second.message.attempt == first.message.attempt
            source.ack(second)

    def test_idle_receive_returns_within_its_timeout(self, broker: Broker) -> None:
        with broker.source() as source:
            source.receive(0.2)  # first call may connect / join
            start = time.monotonic()
            assert source.receive(0.3) is None
            assert time.monotonic() - start < 5.0

    def test_close_is_idempotent(self, broker: Broker) -> None:
        producer = broker.producer()
        producer.close()
        producer.close()
        source = broker.source()
        source.close()
        source.close()

    def test_graceful_stop_finishes_in_flight(self, broker: Broker) -> None:
        with broker.producer() as producer:
            producer.push(b"slow")
            producer.flush(30)
        started = threading.Event()

        def slow(msg: Message) -> None:
            started.set()
            time.sleep(1.0)

        with running(broker, slow) as worker:
            assert started.wait(30)
            worker.stop()
        rec = Recorder()
        with running(broker, rec):
            time.sleep(2.0)
        assert rec.seen == [], "a message finished during shutdown was delivered again"


class DelayContract:
    """delay / at are honoured and never early; revoke cancels; bad times are refused."""

    def test_delay_is_never_early(self, broker: Broker) -> None:
        with broker.delay_producer() as producer:
            due = {
                producer.delay(f"d{i}", 1.0 + i * 0.1): time.time() + 1.0 + i * 0.1
                for i in range(5)
            }
        rec = Recorder()
        with running(broker, rec, concurrency=2):
            assert wait_for(lambda: len(rec.seen) >= 5, timeout=30)
        for msg, handled_at in zip(rec.seen, rec.times, strict=True):
            assert msg.not_before is not None
            assert handled_at >= msg.not_before, (
                f"{msg.id} ran {msg.not_before - handled_at:.3f}s early"
            )
            assert msg.id in due

    def test_at_runs_at_the_time(self, broker: Broker) -> None:
        when = datetime.now(timezone.utc) + timedelta(seconds=1.5)
        with broker.delay_producer() as producer:
            producer.at(b"timed", when)
        rec = Recorder()
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) == 1)
        assert rec.times[0] >= when.timestamp()

    def test_revoke_before_time_never_runs(self, broker: Broker) -> None:
        with broker.delay_producer() as producer:
            job = producer.delay(b"cancelled", 1.0)
            keep = producer.delay(b"kept", 1.0)
            assert producer.revoke(job) is True
        rec = Recorder()
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) == 1)
            time.sleep(1.0)
        assert rec.values() == [b"kept"]
        assert rec.seen[0].id == keep

    def test_negative_delay_and_past_time_are_errors(self, broker: Broker) -> None:
        with broker.delay_producer() as producer:
            with pytest.raises(ValueError):
                producer.delay(b"x", -1)
            with pytest.raises(ValueError):
                producer.at(b"x", datetime.now(timezone.utc) - timedelta(seconds=5))

    def test_delay_many_one_result_per_job_and_each_runs_once(self, broker: Broker) -> None:
        soon = datetime.now(timezone.utc) + timedelta(seconds=1)
        with broker.delay_producer() as producer:
            results = producer.delay_many([(f"m{i}".encode(), 0.5) for i in range(5)])
            results += producer.delay_many([(b"bad", -1)])
            results += producer.at_many([(b"at", soon), (b"past", soon - timedelta(hours=1))])
        ids = [r for r in results if isinstance(r, str)]
        assert len(ids) == 6 and len(set(ids)) == 6
        assert isinstance(results[5], ValueError) and isinstance(results[7], ValueError)
        rec = Recorder()
        with running(broker, rec, concurrency=2):
            assert wait_for(lambda: len(rec.seen) >= 6, timeout=30)
            time.sleep(0.5)  # nothing else may turn up
        assert sorted(m.id for m in rec.seen) == sorted(ids)
        for msg, handled_at in zip(rec.seen, rec.times, strict=True):
            assert msg.not_before is not None and handled_at >= msg.not_before


def _push(broker: Broker, *values: bytes, **options: Any) -> None:
    with broker.producer() as producer:
        for value in values:
            producer.push(value, **options)
        producer.flush(30)


class FateContract:
    """What happens to a message: errors recorded as the handler's, dead letters by ref,
    time limits, priorities and caller-chosen ids where the backend declares them."""

    def test_dead_letter_keeps_the_handlers_error_and_traceback(self, broker: Broker) -> None:
        _push(broker, b"divide")

        def handler(msg: Message) -> None:
            _ = 1 / 0

        with running(broker, handler, retry=RetryPolicy(max_attempts=1)):
            assert wait_for(lambda: len(broker.dead_letters()) == 1), "not dead-lettered"
        (dead,) = broker.dead_letters()
        assert dead.error.startswith("ZeroDivisionError: division by zero"), dead.error
        assert "ZeroDivisionError" in dead.traceback, "the dead letter keeps no traceback"
        assert dead.message.id

    def test_dead_letters_by_ref(self, broker: Broker) -> None:
        _push(broker, b"one", b"two")
        with running(broker, Recorder(fail=lambda m: Drop("no"))):
            assert wait_for(lambda: len(broker.dead_letters()) == 2)
        first, second = broker.dead_letters()
        assert [d.ref for d in broker.dead_letters(refs=[first.ref])] == [first.ref]
        assert [d.message.id for d in broker.dead_letters(refs=[second.message.id])] == [
            second.message.id
        ]
        assert len(broker.dead_letters(limit=1)) == 1
        try:
            purged = broker.purge_dead([first.ref])
        except NotSupported:
            assert len(broker.dead_letters()) == 2  # refused, and nothing purged
            return
        assert purged == 1
        assert [d.ref for d in broker.dead_letters()] == [second.ref]

    def test_time_limit_interrupts_a_hung_handler(self, broker: Broker) -> None:
        _push(broker, b"hang", b"ok1", b"ok2")
        done: list[bytes] = []

        def handler(msg: Message) -> None:
            while msg.value == b"hang":
                time.sleep(0.1)
            done.append(msg.value)

        policy = RetryPolicy(max_attempts=2, backoff=0.1, jitter=False)
        with running(broker, handler, concurrency=2, retry=policy, time_limit=1.0):
            assert wait_for(lambda: len(broker.dead_letters()) == 1, 30)
        assert sorted(done) == [b"ok1", b"ok2"]
        (dead,) = broker.dead_letters()
        assert dead.error.startswith("TimeLimitExceeded"), dead.error
        assert dead.message.attempt == 2

    def test_receive_many_hands_out_a_batch(self, broker: Broker) -> None:
        _push(broker, *(b"b%d" % i for i in range(5)))
        got: list[Delivery[Any]] = []
        with broker.source() as source:
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                batch = source.receive_many(10, 0.5)
                assert len(batch) <= 10
                got.extend(batch)
            assert sorted(d.message.value for d in got) == [b"b%d" % i for i in range(5)]
            for d in got:
                source.ack(d)

    def test_priority_lower_runs_first_also_after_a_retry(self, broker: Broker) -> None:
        if not broker.capabilities.priority:
            with pytest.raises(NotSupported), broker.producer() as producer:
                producer.push(b"x", priority=1)
            return
        _push(broker, b"late", priority=100)
        _push(broker, b"urgent", priority=0)
        order = Recorder()
        with running(broker, order, concurrency=1):
            assert wait_for(lambda: len(order.seen) == 2)
        assert order.values() == [b"urgent", b"late"]
        # A retried job keeps its priority: it overtakes a later, less urgent one.
        _push(broker, b"again", priority=0)
        first = Recorder(fail=lambda m: Retry(after=1.0))
        with running(broker, first, concurrency=1, retry=RetryPolicy(max_attempts=5)):
            assert wait_for(lambda: len(first.seen) == 1)
        _push(broker, b"filler", priority=100)
        time.sleep(1.5)  # both are ready now
        second = Recorder()
        with running(broker, second, concurrency=1):
            assert wait_for(lambda: len(second.seen) == 2)
        assert second.values() == [b"again", b"filler"]
        assert second.seen[0].attempt == 2

    def test_batch_handler_gets_batches_and_fails_only_the_items_it_names(
        self, broker: Broker
    ) -> None:
        _push(broker, *(b"%d" % i for i in range(30)))
        calls: list[list[bytes]] = []
        lock = threading.Lock()

        def handler(batch: list[Message]) -> None:
            with lock:
                calls.append([m.value for m in batch])
            bad = {
                i: ValueError(f"bad {m.value!r}") for i, m in enumerate(batch) if m.value == b"7"
            }
            if bad:
                raise BatchFailed(bad)

        policy = RetryPolicy(max_attempts=1)
        with running(
            broker, BatchHandler(handler, BatchConfig(max_size=10, max_wait=0.5)), retry=policy
        ):
            assert wait_for(lambda: len(broker.dead_letters()) == 1)
            assert wait_for(lambda: sum(len(c) for c in calls) == 30)
        assert all(len(c) <= 10 for c in calls)
        assert len(calls) < 30, "messages were not batched"
        (dead,) = broker.dead_letters()
        assert dead.message.value == b"7" and dead.error.startswith("ValueError: bad")

    def test_caller_chosen_job_id(self, broker: Broker) -> None:
        if not broker.capabilities.idempotent_push:
            with pytest.raises(NotSupported), broker.producer() as producer:
                producer.push(b"x", job_id="order-42")
            return
        with broker.producer() as producer:
            producer.push(b"x", job_id="order-42")
            with pytest.raises(DuplicateJob):
                producer.push(b"y", job_id="order-42")
