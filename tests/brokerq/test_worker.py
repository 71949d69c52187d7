"""The worker runtime over a scripted in-test Source: concurrency, backpressure, stop, outcomes."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import pytest
from pydantic import BaseModel

from brokerq.broker import Delivery, Source
from brokerq.errors import Drop, Retry
from brokerq.message import Message
from brokerq.middleware import Metrics, Middleware
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker
from tests.contract import wait_for


class Payload(BaseModel):
    n: int


class ListSource(Source):
    """Hands out queued messages and records how each was settled."""

    def __init__(self, values: list[bytes] | None = None) -> None:
        self.pending: deque[Message] = deque(Message(v) for v in values or [])
        self.settled: list[tuple[str, str, Any]] = []
        self.received = 0
        self.lock = threading.Lock()
        self.closed = 0

    def receive(self, timeout: float) -> Delivery[None] | None:
        with self.lock:
            if self.pending:
                self.received += 1
                return Delivery(self.pending.popleft(), None)
        time.sleep(min(timeout, 0.01))
        return None

    def _settle(self, kind: str, d: Delivery[Any], extra: Any = None) -> None:
        with self.lock:
            self.settled.append((kind, d.message.value.decode(), extra))

    def ack(self, delivery: Delivery[Any]) -> None:
        self._settle("ack", delivery)

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        self._settle("retry", delivery, (delay, error))

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        self._settle("dead", delivery, error)

    def release(self, delivery: Delivery[Any]) -> None:
        self._settle("release", delivery)

    def close(self) -> None:
        self.closed += 1

    def kinds(self) -> dict[str, str]:
        with self.lock:
            return {value: kind for kind, value, _ in self.settled}


def run_in_thread(worker: Worker, handler: Any) -> threading.Thread:
    t = threading.Thread(target=worker.consume, args=(handler,), daemon=True)
    t.start()
    return t


def test_outcomes_ack_retry_dead_and_signals() -> None:
    source = ListSource([b"ok", b"fail", b"drop", b"retry-me"])
    policy = RetryPolicy(max_attempts=2, backoff=0.5, jitter=False)

    def handler(m: Message) -> None:
        if m.value == b"fail":
            raise RuntimeError("boom")
        if m.value == b"drop":
            raise Drop("unwanted")
        if m.value == b"retry-me":
            raise Retry(after=7.0)

    worker = Worker(source, retry=policy)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 4, 10)
    worker.stop()
    t.join(10)
    by_value = {value: (kind, extra) for kind, value, extra in source.settled}
    assert by_value["ok"] == ("ack", None)
    assert by_value["fail"] == ("retry", (0.5, "RuntimeError: boom"))
    assert by_value["drop"] == ("dead", "Drop: unwanted")
    assert by_value["retry-me"] == ("retry", (7.0, "Retry: retry requested after 7.0s"))
    assert source.closed == 1


def test_last_attempt_goes_to_dead_letter() -> None:
    source = ListSource()
    source.pending.append(Message(b"x", attempt=3))
    worker = Worker(source, retry=RetryPolicy(max_attempts=3))
    t = run_in_thread(worker, lambda m: 1 / 0)
    assert wait_for(lambda: len(source.settled) == 1, 10)
    worker.stop()
    t.join(10)
    assert source.settled == [("dead", "x", "ZeroDivisionError: division by zero")]


def test_undecodable_payload_is_dead_lettered_at_once() -> None:
    def handler(p: Payload) -> None:
        raise AssertionError("never")

    source = ListSource([b"{oops"])
    worker = Worker(source, retry=RetryPolicy(max_attempts=5))
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 1, 10)
    worker.stop()
    t.join(10)
    kind, _, error = source.settled[0]
    assert kind == "dead"
    assert error.startswith("DecodeError:")


def test_concurrency_runs_handlers_in_parallel() -> None:
    source = ListSource([str(i).encode() for i in range(8)])
    active = 0
    peak = 0
    lock = threading.Lock()

    def handler(m: Message) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.2)
        with lock:
            active -= 1

    worker = Worker(source, concurrency=4)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 8, 20)
    worker.stop()
    t.join(10)
    assert peak == 4


def test_async_handlers_run_concurrently_too() -> None:
    import asyncio

    source = ListSource([str(i).encode() for i in range(6)])
    active = 0
    peak = 0

    async def handler(m: Message) -> None:
        nonlocal active, peak
        active += 1  # single event loop thread: no lock needed
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1

    worker = Worker(source, concurrency=3)
    t = run_in_thread(worker, handler)
    assert wait_for(lambda: len(source.settled) == 6, 20)
    worker.stop()
    t.join(10)
    assert peak == 3
    assert set(source.kinds().values()) == {"ack"}


def test_slow_handlers_apply_backpressure() -> None:
    """A thread receives only when it is free: busy handlers stop the flow from the source."""
    source = ListSource([str(i).encode() for i in range(100)])
    gate = threading.Event()
    worker = Worker(source, concurrency=2)
    t = run_in_thread(worker, lambda m: gate.wait(10))
    time.sleep(0.5)
    assert source.received == 2
    gate.set()
    assert wait_for(lambda: len(source.settled) == 100, 20)
    worker.stop()
    t.join(10)


def test_stop_finishes_in_flight_and_receives_no_more() -> None:
    source = ListSource([str(i).encode() for i in range(10)])
    started = threading.Event()

    def handler(m: Message) -> None:
        started.set()
        time.sleep(0.5)

    worker = Worker(source, concurrency=2)
    t = run_in_thread(worker, handler)
    assert started.wait(5)
    time.sleep(0.1)
    worker.stop()
    t.join(10)
    assert not t.is_alive()
    assert [k for k, _, _ in source.settled] == ["ack", "ack"]
    assert source.received == 2
    assert len(source.pending) == 8
    assert source.closed == 1


def test_a_failing_source_stops_the_worker_and_raises() -> None:
    from brokerq.errors import BrokerError

    class Broken(ListSource):
        def receive(self, timeout: float) -> Delivery[None] | None:
            raise BrokerError("consumer for 't' failed: broker gone")

    worker = Worker(Broken(), concurrency=3)
    with pytest.raises(BrokerError, match="broker gone"):
        worker.consume(lambda m: None)


def test_shutdown_timeout_abandons_unfinished_work_unacked() -> None:
    source = ListSource([b"stuck"])
    started = threading.Event()
    release = threading.Event()

    def handler(m: Message) -> None:
        started.set()
        release.wait(10)

    worker = Worker(source, shutdown_timeout=0.3)
    t = run_in_thread(worker, handler)
    assert started.wait(5)
    worker.stop()
    t.join(5)
    assert not t.is_alive(), "consume must return after shutdown_timeout"
    release.set()
    time.sleep(0.2)
    assert source.settled == [], "an abandoned message must not be acked"


def test_middleware_order_and_exceptions_are_contained() -> None:
    calls: list[str] = []

    class Tag(Middleware):
        def __init__(self, name: str, explode: bool = False) -> None:
            self.name, self.explode = name, explode

        def before_process(self, message: Message) -> None:
            calls.append(f"before-{self.name}")
            if self.explode:
                raise RuntimeError("hook failure")

        def after_process(
            self, message: Message, outcome: str, error: BaseException | None
        ) -> None:
            calls.append(f"after-{self.name}-{outcome}")

    metrics = Metrics()
    source = ListSource([b"a"])
    worker = Worker(source, middleware=[Tag("1"), Tag("2", explode=True), metrics])
    t = run_in_thread(worker, lambda m: calls.append("handler"))
    assert wait_for(lambda: len(source.settled) == 1, 10)
    worker.stop()
    t.join(10)
    assert calls == ["before-1", "before-2", "handler", "after-2-ok", "after-1-ok"]
    assert source.settled[0][0] == "ack"
    snap = metrics.snapshot()
    assert snap["processed"] == 1
    assert snap["failed"] == 0


def test_metrics_count_failures() -> None:
    metrics = Metrics()
    source = ListSource([b"a", b"b"])
    source.pending.append(Message(b"c", attempt=5))
    worker = Worker(source, retry=RetryPolicy(max_attempts=5), middleware=[metrics])
    t = run_in_thread(worker, lambda m: 1 / 0 if m.value != b"a" else None)
    assert wait_for(lambda: len(source.settled) == 3, 10)
    worker.stop()
    t.join(10)
    snap = metrics.snapshot()
    assert (snap["processed"], snap["failed"], snap["retried"], snap["dead_lettered"]) == (
        1,
        2,
        1,
        1,
    )


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Worker(ListSource(), concurrency=0)


def test_a_job_redelivered_past_max_attempts_is_dead_lettered_without_running() -> None:
    """A job whose handler kills the worker every time must not loop forever."""
    source = ListSource()
    source.pending.append(Message(b"poison", attempt=4))
    ran: list[Message] = []
    worker = Worker(source, retry=RetryPolicy(max_attempts=3))
    t = run_in_thread(worker, ran.append)
    assert wait_for(lambda: len(source.settled) == 1, 10)
    worker.stop()
    t.join(10)
    assert ran == []
    kind, _, error = source.settled[0]
    assert kind == "dead"
    assert "delivered 4 times without being settled" in error
