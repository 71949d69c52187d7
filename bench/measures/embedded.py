"""embedded: brokerq's SqliteBroker (synchronous=full) vs huey's SqliteHuey (fsync), 8 thread
workers, no-op jobs end to end; and the brokers' own figures (``sqlite`` / ``memory``).

Enqueue N, then time a Worker draining them until the N-th is acked.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from brokerq.broker import Broker
from brokerq.message import Message
from brokerq.middleware import Middleware

BATCH = 1000
WORKERS = 8
BODY = b'{"job": "noop", "n": 0}'


class _Settled(Middleware):
    """Counts settled messages (after ack) and signals when ``target`` is reached."""

    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = threading.Event()
        self._lock = threading.Lock()

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


def _noop(msg: Message) -> None:
    """The job under test: does nothing, so the figures are the broker's and the worker's."""


def drain(broker: Broker, n: int, concurrency: int, timeout: float = 600.0) -> float:
    """Run a Worker until ``n`` jobs were handled and acked; the seconds it took."""
    from brokerq.retry import RetryPolicy
    from brokerq.worker import Worker

    settled = _Settled(n)
    worker = Worker(
        broker.source,
        concurrency=concurrency,
        middleware=[settled],
        retry=RetryPolicy(max_attempts=1),
        receive_timeout=0.2,
    )
    thread = threading.Thread(target=worker.consume, args=(_noop,), daemon=True)
    start = time.perf_counter()
    thread.start()
    if not settled.done.wait(timeout):
        raise RuntimeError(f"only {settled.count} of {n} jobs done in {timeout}s")
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join(60)
    return elapsed


def broker_figures(
    broker: Broker, name: str, n: int, concurrency: int, push_many: Callable[[list[bytes]], Any]
) -> Figures:
    """Enqueue one by one, drain; enqueue in batches of BATCH, drain again."""
    with broker.producer() as producer:
        start = time.perf_counter()
        for _ in range(n):
            producer.push(BODY)
        enqueue = time.perf_counter() - start
    e2e = drain(broker, n, concurrency)
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        push_many([BODY] * min(BATCH, n - i))
    batched = time.perf_counter() - start
    e2e_batched = drain(broker, n, concurrency)
    return {
        "backend": name,
        "n": n,
        "concurrency": concurrency,
        "enqueue_per_s": n / enqueue,
        f"enqueue_batch{BATCH}_per_s": n / batched,
        "e2e_per_s": n / e2e,
        "e2e_again_per_s": n / e2e_batched,
    }


def run_sqlite(n: int, concurrency: int, synchronous: str = "full") -> Figures:
    """sqlite in a fresh file in a temporary directory: push, then drain."""
    from brokerq.embedded import SqliteBroker

    with tempfile.TemporaryDirectory(prefix="brokerq-bench-") as tmp:
        broker = SqliteBroker({"path": str(Path(tmp) / "bench.db"), "synchronous": synchronous})
        with broker, broker.producer() as bulk:
            return broker_figures(broker, f"sqlite/{synchronous}", n, concurrency, bulk.push_many)


def run_memory(n: int, concurrency: int) -> Figures:
    """The in-process memory broker: the worker runtime plus the cheapest broker."""
    from brokerq.embedded import MemoryBroker

    with MemoryBroker() as broker:
        bulk = broker.producer()
        return broker_figures(broker, "memory", n, concurrency, bulk.push_many)


def brokerq(n: int, concurrency: int) -> Figures:
    """SqliteBroker synchronous=full: end to end after one-by-one enqueue (child process)."""
    r = run_sqlite(n, concurrency, synchronous="full")
    return {
        "count": n,
        "elapsed_s": n / r["e2e_per_s"],
        "concurrency": concurrency,
        "enqueue_per_s": r["enqueue_per_s"],
        "synchronous": "full",
    }


def huey(n: int, concurrency: int) -> Figures:
    """huey's SqliteHuey (fsync=True), thread workers (child process)."""
    from huey import SqliteHuey

    logging.getLogger("huey").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="brokerq-bench-huey-") as tmp:
        h = SqliteHuey("bench", filename=str(Path(tmp) / "huey.db"), fsync=True)
        done = threading.Event()
        lock = threading.Lock()
        count = [0]

        @h.task()  # type: ignore[untyped-decorator]
        def noop() -> None:
            with lock:
                count[0] += 1
                if count[0] >= n:
                    done.set()

        start = time.perf_counter()
        for _ in range(n):
            noop()
        enqueue = time.perf_counter() - start
        consumer = h.create_consumer(
            workers=concurrency, worker_type="thread", periodic=False, check_worker_health=False
        )
        start = time.perf_counter()
        consumer.start()
        if not done.wait(600):
            raise RuntimeError(f"huey: {count[0]} of {n}")
        elapsed = time.perf_counter() - start
        consumer.stop(graceful=True)
    return {
        "count": n,
        "elapsed_s": elapsed,
        "concurrency": concurrency,
        "enqueue_per_s": n / enqueue,
        "fsync": True,
    }


def run(r: Run) -> None:
    n = r.n("embedded")
    label = f"embedded sqlite e2e no-op ({WORKERS} workers; other = huey SqliteHuey)"
    for rep in range(r.reps):
        for impl, fn in (("brokerq", brokerq), ("huey", huey)):
            r.measure("embedded", impl, label, r.py(fn, 600, n=n, concurrency=WORKERS), rep)


MEASURE = Measure(name="embedded", key="embedded", run=run, steps=2)
