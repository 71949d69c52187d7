"""Throughput of the embedded brokers: enqueue jobs/s and end-to-end no-op jobs/s.

    .venv/bin/python bench/embedded.py                     # 20k jobs, concurrency 4 and 8
    .venv/bin/python bench/embedded.py -n 5000 -c 1 4 --synchronous normal

Prints figures, asserts nothing. ``run_sqlite`` and ``run_memory`` return dicts with the same
keys so that other brokers (e.g. huey's SqliteHuey) can be measured by the same table.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.message import Message
from brokerq.middleware import Middleware
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker

BATCH = 1000


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
    """Run a Worker until ``n`` jobs were handled and acked; return the seconds it took."""
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


def _measure(
    broker: Broker, name: str, n: int, concurrency: int, push_many: Callable[[list[bytes]], Any]
) -> dict[str, Any]:
    body = b'{"job": "noop", "n": 0}'
    with broker.producer() as producer:
        start = time.perf_counter()
        for _ in range(n):
            producer.push(body)
        enqueue = time.perf_counter() - start
    e2e = drain(broker, n, concurrency)
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        push_many([body] * min(BATCH, n - i))
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


def run_sqlite(
    n: int, concurrency: int, *, path: str | None = None, synchronous: str = "full"
) -> dict[str, Any]:
    """sqlite in a fresh file (a temporary directory unless ``path``): push, then drain."""
    with tempfile.TemporaryDirectory(prefix="brokerq-bench-") as tmp:
        db = path or str(Path(tmp) / "bench.db")
        broker = SqliteBroker({"path": db, "synchronous": synchronous})
        with broker, broker.producer() as bulk:
            result = _measure(broker, f"sqlite/{synchronous}", n, concurrency, bulk.push_many)
    return result


def run_memory(n: int, concurrency: int) -> dict[str, Any]:
    """The in-process memory broker, as the ceiling of the worker runtime itself."""
    with MemoryBroker() as broker:
        bulk = broker.producer()
        return _measure(broker, "memory", n, concurrency, bulk.push_many)


def table(results: list[dict[str, Any]]) -> str:
    """Results as an aligned text table."""
    keys = list(results[0])
    cells = [
        [f"{r[k]:,.0f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in results
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20_000, help="jobs per run (default 20000)")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--synchronous", choices=["full", "normal"], nargs="+", default=["full"])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory reference")
    args = parser.parse_args()
    results = []
    for c in args.concurrency:
        for sync in args.synchronous:
            results.append(run_sqlite(args.n, c, synchronous=sync))
        if not args.no_memory:
            results.append(run_memory(args.n, c))
    print(table(results))  # a benchmark prints its figures


if __name__ == "__main__":
    main()
