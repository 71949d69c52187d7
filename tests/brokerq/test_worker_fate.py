"""The Worker owns a message's fate: failures of any kind, verdicts kept, time limits."""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from typing import Any

from brokerq.broker import Delivery
from brokerq.errors import BrokerError, Drop
from brokerq.headers import TIME_LIMIT
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker
from tests.brokerq.test_worker import ListSource, run_in_thread
from tests.contract import wait_for


def _stop(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(15)
    assert not thread.is_alive()


def test_sys_exit_fails_the_message_not_the_thread() -> None:
    source = ListSource([b"exit"] + [b"ok%d" % i for i in range(9)])
    policy = RetryPolicy(max_attempts=1)

    def handler(m: Message) -> None:
        if m.value == b"exit":
            raise SystemExit(1)

    worker = Worker(source, concurrency=2, retry=policy)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 10, 10)
    kinds = source.kinds()
    assert kinds.pop("exit") == "dead"
    assert set(kinds.values()) == {"ack"}
    assert all(th.is_alive() for th, _ in worker._workers)
    _stop(worker, t)


class RefusingDeadSource(ListSource):
    """dead() fails the first time (a refused dead-letter write); the message comes back."""

    def __init__(self) -> None:
        super().__init__([b"drop-me"])
        self.dead_calls = 0

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        self.dead_calls += 1
        if self.dead_calls == 1:
            raise BrokerError("dead-letter topic refused the write")
        super().dead(delivery, error)

    def release(self, delivery: Delivery[Any]) -> None:
        super().release(delivery)
        with self.lock:
            self.pending.append(delivery.message)  # redelivered, same attempt


def test_verdict_survives_a_failed_settle_and_the_handler_runs_once() -> None:
    source = RefusingDeadSource()
    runs: list[int] = []

    def handler(m: Message) -> None:
        runs.append(m.attempt)
        raise Drop("bad order")

    worker = Worker(source, retry=RetryPolicy(max_attempts=3))
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: source.kinds().get("drop-me") == "dead", 10)
    _stop(worker, t)
    assert runs == [1]
    dead = [extra for kind, _, extra in source.settled if kind == "dead"]
    assert dead == ["Drop: bad order"]
    assert dead[0].type == "Drop"


def test_redelivered_past_max_attempts_is_dead_as_crashed() -> None:
    source = ListSource()
    source.pending.append(Message(b"poison", attempt=4))
    ran: list[Message] = []
    worker = Worker(source, retry=RetryPolicy(max_attempts=3))
    t = run_in_thread(worker, ran.append)
    assert wait_for(lambda: bool(source.settled), 10)
    _stop(worker, t)
    assert ran == []
    kind, _, error = source.settled[0]
    assert kind == "dead" and error.type == "WorkerCrashed"


def test_sync_handler_is_interrupted_at_its_time_limit() -> None:
    source = ListSource([b"slow", b"fast"])

    def handler(m: Message) -> None:
        while m.value == b"slow":
            time.sleep(0.1)

    worker = Worker(source, concurrency=2, retry=RetryPolicy(max_attempts=1), time_limit=0.5)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 2, 10)
    _stop(worker, t)
    assert source.kinds() == {"slow": "dead", "fast": "ack"}
    error = next(extra for kind, _, extra in source.settled if kind == "dead")
    assert error.type == "TimeLimitExceeded"


def test_message_header_overrides_the_worker_limit() -> None:
    source = ListSource()
    source.pending.append(Message(b"slow", headers={TIME_LIMIT: "0.3"}))
    worker = Worker(source, retry=RetryPolicy(max_attempts=1), time_limit=None)

    def slow(m: Message) -> None:
        for _ in range(100):
            time.sleep(0.05)

    t = run_in_thread(worker, slow)
    assert wait_for(lambda: bool(source.settled), 4)
    _stop(worker, t)
    assert source.settled[0][0] == "dead"


def test_async_handler_is_cancelled_at_its_limit() -> None:
    source = ListSource([b"await"])
    cancelled = threading.Event()

    async def handler(m: Message) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Worker(source, retry=RetryPolicy(max_attempts=1), time_limit=0.5)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: bool(source.settled), 10)
    _stop(worker, t)
    assert cancelled.is_set()
    assert source.settled[0][2].type == "TimeLimitExceeded"


def test_handler_blocked_in_c_is_abandoned_and_its_slot_refilled() -> None:
    libc = ctypes.CDLL(None)
    source = ListSource([b"stuck"] + [b"after%d" % i for i in range(5)])
    started = threading.Event()

    def handler(m: Message) -> None:
        if m.value == b"stuck":
            started.set()
            libc.sleep(4)  # in C: the async exception cannot land until it returns

    worker = Worker(
        source,
        concurrency=1,
        retry=RetryPolicy(max_attempts=1),
        time_limit=0.3,
        time_limit_grace=0.5,
    )
    t = run_in_thread(worker, handler)
    assert started.wait(5)
    # the only thread is stuck; a fresh one must take the slot and run the rest
    assert wait_for(lambda: len(source.settled) == 6, 3.5)
    assert source.kinds()["stuck"] == "dead"
    assert worker.concurrency == 1 and len(worker._busy_slots()) == 1
    _stop(worker, t)


def test_worker_passes_prefetch_to_the_source_factory() -> None:
    seen: list[int] = []

    def factory(prefetch: int | None = None) -> ListSource:
        seen.append(prefetch or 0)
        return ListSource()

    worker = Worker(factory, concurrency=5)
    t = run_in_thread(worker, lambda m: None)
    assert wait_for(lambda: bool(seen), 5)
    _stop(worker, t)
    assert seen == [worker.prefetch] and worker.prefetch >= 5
