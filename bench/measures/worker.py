"""worker: the core runtime's own ceiling, no broker involved (not in the default run).

A Worker over an in-process source that never waits (receive, middleware, handler call,
ack), with 1 and 8 threads; and the memory broker end to end with 8 workers, the cheapest
broker on top of it. ``python -m bench worker``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.measures.embedded import run_memory
from brokerq.broker import Delivery, Source
from brokerq.message import Message


class ReadySource(Source):
    """Hands out prebuilt deliveries; counts acks and signals when all are done."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items = deque(Delivery(Message(b"x", id=str(i)), i) for i in range(n))
        self.acked = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def receive(self, timeout: float) -> Delivery[Any] | None:
        try:
            return self.items.popleft()
        except IndexError:
            time.sleep(min(timeout, 0.01))
            return None

    def ack(self, delivery: Delivery[Any]) -> None:
        with self.lock:
            self.acked += 1
            if self.acked == self.n:
                self.done.set()

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        raise AssertionError(error)

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        raise AssertionError(error)

    def release(self, delivery: Delivery[Any]) -> None:
        pass

    def close(self) -> None:
        pass


def runtime(n: int, concurrency: int) -> Figures:
    """``n`` no-op messages through a Worker with ``concurrency`` threads (child process)."""
    from brokerq.worker import Worker

    source = ReadySource(n)
    worker = Worker(source, concurrency=concurrency)
    thread = threading.Thread(target=worker.consume, args=(lambda m: None,), daemon=True)
    start = time.perf_counter()
    thread.start()
    if not source.done.wait(600):
        raise RuntimeError(f"only {source.acked} of {n} acked in 600s")
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join()
    return {"count": n, "elapsed_s": elapsed, "concurrency": concurrency}


def memory(n: int, concurrency: int) -> Figures:
    """The memory broker end to end after one-by-one enqueue (child process)."""
    r = run_memory(n, concurrency)
    return {
        "count": n,
        "elapsed_s": n / r["e2e_per_s"],
        "concurrency": concurrency,
        "enqueue_per_s": r["enqueue_per_s"],
    }


def run(r: Run) -> None:
    n = r.n("worker")
    for rep in range(r.reps):
        for c in (1, 8):
            label = f"worker runtime no-op, {c} thread{'s' if c > 1 else ''} (no broker)"
            r.measure(f"worker.c{c}", "brokerq", label, r.py(runtime, n=n, concurrency=c), rep)
        label = "embedded memory e2e no-op (8 workers)"
        r.measure("worker.memory", "brokerq", label, r.py(memory, 600, n=n, concurrency=8), rep)


MEASURE = Measure(name="worker", key="worker", run=run, steps=3, default=False)
