"""The worker runtime alone: no-op handler over an in-process source that never waits.

    .venv/bin/python bench/worker.py [-n 200000] [--concurrency 1 8]

Prints msg/s for each concurrency: the ceiling the core runtime puts on any backend
(receive, middleware, handler call, ack), before any broker cost.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import deque
from typing import Any

from brokerq.broker import Delivery, Source
from brokerq.message import Message
from brokerq.worker import Worker


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


def run(n: int, concurrency: int) -> float:
    """msg/s for ``n`` no-op messages through a Worker with ``concurrency`` threads."""
    source = ReadySource(n)
    worker = Worker(source, concurrency=concurrency)
    thread = threading.Thread(target=worker.consume, args=(lambda m: None,), daemon=True)
    start = time.perf_counter()
    thread.start()
    source.done.wait()
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    for c in args.concurrency:
        print(f"worker runtime, no-op handler, concurrency={c}: {run(args.n, c):,.0f} msg/s")


if __name__ == "__main__":
    main()
