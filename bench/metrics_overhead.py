"""What the Prometheus metrics middleware costs a worker: no-op throughput, metrics on vs off.

    .venv/bin/python bench/metrics_overhead.py                 # runtime, memory, sqlite
    .venv/bin/python bench/metrics_overhead.py --kafka 127.0.0.1:9092 -n 200000
    .venv/bin/python bench/metrics_overhead.py --only kq --reps 5 --sample 1,8 --json

Each measure runs metrics off and on alternately in the same process (off/on, then on/off,
...), ``--reps`` times each, and keeps the best of each, so drift of a shared machine hits
both and its noise (which only slows runs down) is filtered out.
Measures:

- ``hooks``: what the middleware hooks alone cost per message (no Worker), best of 7;
- ``runtime``: the Worker over an in-process source that never waits (bench/worker.py's
  ceiling: no broker cost at all, so the middleware's share is the largest it can be);
- ``memory``: the embedded memory broker end to end;
- ``sqlite``: the embedded sqlite broker end to end, 8 threads (at most 20,000 jobs);
- ``kq``: a Kafka topic pre-filled with ``n`` messages, consumed by a Worker over
  ``KafkaBroker.source`` with 8 processors (what ``brokerq run`` does; bench/run's
  "kq consume" uses the same path through ``brokerq_kafka.Queue``).

"on" adds ``brokerq.metrics.recorder.WorkerMetrics`` (what ``metrics:`` in the YAML adds;
``--sample N`` as ``metrics: {sample: N}``) and scrapes it once at the end. Prints figures and ratios, asserts nothing; ``run()`` returns them
for a harness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from brokerq.broker import Delivery, Source
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.message import Message
from brokerq.metrics.recorder import WorkerMetrics
from brokerq.middleware import Middleware
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker

VALUE = b"x" * 100


class _ReadySource(Source):
    """Prebuilt deliveries handed out at once (no broker cost)."""

    def __init__(self, n: int) -> None:
        self.items = deque(Delivery(Message(VALUE, id=str(i)), i) for i in range(n))

    def receive(self, timeout: float) -> Delivery[Any] | None:
        try:
            return self.items.popleft()
        except IndexError:
            time.sleep(min(timeout, 0.01))
            return None

    def ack(self, delivery: Delivery[Any]) -> None:
        pass

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        raise AssertionError(error)

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        raise AssertionError(error)

    def release(self, delivery: Delivery[Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _Done(Middleware):
    """Signals when ``n`` messages were handled; the clock starts at the first one."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.lock = threading.Lock()
        self.event = threading.Event()

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        with self.lock:
            if not self.count:
                self.first = time.perf_counter()
            self.count += 1
            if self.count >= self.n:
                self.event.set()


@dataclass
class Figure:
    """One drain: wall-clock msg/s, and the process's CPU time per message in microseconds
    (all threads, librdkafka's included): the steadier figure on a shared machine."""

    per_s: float
    cpu_us: float


def _drain(source: Source | Callable[[], Source], n: int, concurrency: int, metrics: int) -> Figure:
    """``n`` no-op messages through a Worker; ``metrics`` 0: without WorkerMetrics, N: with
    it, timing one message in N (``metrics: {sample: N}``)."""
    done = _Done(n)
    middleware: list[Middleware] = [done]
    recorder = WorkerMetrics("bench", "bench", sample=metrics) if metrics else None
    if recorder is not None:
        middleware.insert(0, recorder)  # outermost, as `brokerq run` installs it
    worker = Worker(
        source,
        concurrency=concurrency,
        middleware=middleware,
        retry=RetryPolicy(max_attempts=1),
        receive_timeout=0.2,
    )
    thread = threading.Thread(target=worker.consume, args=(lambda m: None,), daemon=True)
    start = time.perf_counter()
    cpu = time.process_time()
    thread.start()
    if not done.event.wait(600):
        raise RuntimeError(f"only {done.count} of {n} handled in 600s")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    worker.stop()
    thread.join(60)
    if recorder is not None:
        registry = CollectorRegistry()
        registry.register(recorder)
        generate_latest(registry)  # a scrape works and sees every message
        assert recorder.totals()["ok"] == n
    return Figure(n / elapsed, cpu / n * 1e6)


def runtime(n: int, concurrency: int, metrics: int) -> Figure:
    return _drain(_ReadySource(n), n, concurrency, metrics)


def memory(n: int, concurrency: int, metrics: int) -> Figure:
    with MemoryBroker() as broker:
        with broker.producer() as producer:
            for _ in range(n):
                producer.push(VALUE)
        return _drain(broker.source, n, concurrency, metrics)


def sqlite(n: int, concurrency: int, metrics: int) -> Figure:
    """A fresh sqlite file (synchronous=normal pushes, as bench/embedded.py's bulk load)."""
    with tempfile.TemporaryDirectory(prefix="brokerq-bench-") as tmp:
        broker = SqliteBroker({"path": str(Path(tmp) / "q.db"), "synchronous": "normal"})
        with broker, broker.producer() as producer:
            for i in range(0, n, 1000):
                producer.push_many([VALUE] * min(1000, n - i))
            return _drain(broker.source, n, concurrency, metrics)


def kq(bootstrap: str, n: int, metrics: int, topic: str) -> Figure:
    """A new consumer group over ``topic`` (already holding ``n`` messages)."""
    from brokerq_kafka.broker import KafkaBroker

    broker = KafkaBroker.from_config(
        {
            "brokers": [bootstrap],
            "topic": topic,
            "group": f"bench-metrics-{uuid.uuid4().hex[:8]}",
            "offset": "first",
            "processors": 8,
        }
    )
    with broker:
        return _drain(broker.source, n, int(broker.worker_options()["concurrency"]), metrics)


def _kafka_topic(bootstrap: str, n: int) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])[name].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    for i in range(n):
        while True:
            try:
                p.produce(name, VALUE, headers=[("brokerq-id", f"{i:012d}")])
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    return name


def _drop_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient

    for f in AdminClient({"bootstrap.servers": bootstrap}).delete_topics([name]).values():
        try:
            f.result(30)
        except Exception:
            pass


class _Empty(Middleware):
    def before_process(self, message: Message) -> None:
        pass

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        pass


def hooks(samples: tuple[int, ...] = (1,), n: int = 200_000, repeat: int = 7) -> dict[str, float]:
    """ns per message of a MiddlewareChain's before + after: no middleware, an empty one, and
    WorkerMetrics per sample value. Best of ``repeat`` (timeit's rule), single thread."""
    import timeit

    from brokerq.middleware import MiddlewareChain

    msg = Message(VALUE, created_at=time.time() - 0.5)
    variants: list[tuple[str, list[Middleware]]] = [("no middleware", []), ("empty", [_Empty()])]
    variants += [(f"sample={k}", [WorkerMetrics("w", "q", sample=k)]) for k in samples]
    out: dict[str, float] = {}
    for name, middleware in variants:
        chain = MiddlewareChain(middleware)

        def one(before: Any = chain.before, after: Any = chain.after) -> None:
            before(msg)
            after(msg, "ok", None)

        out[name] = min(timeit.repeat(one, number=n, repeat=repeat)) / n * 1e9
    return out


def compare(
    fn: Callable[[int], Figure], reps: int, samples: tuple[int, ...] = (1,)
) -> list[dict[str, float]]:
    """Metrics off and on (once per ``samples`` value), in a rotating order, ``reps`` times
    each. Keeps the best of each (highest msg/s, lowest CPU us/msg; timeit's rule: on a
    shared machine the noise only ever slows a run down) and the on/off ratios of both
    (``cpu_ratio`` = off CPU / on CPU: the throughput ratio a machine with a free core would
    see). One dict per ``samples`` value."""
    variants = (0, *samples)
    runs: dict[int, list[Figure]] = {v: [] for v in variants}
    for rep in range(reps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            runs[v].append(fn(v))
    off = runs[0]
    off_s, off_cpu = max(f.per_s for f in off), min(f.cpu_us for f in off)
    out = []
    for v in samples:
        on = runs[v]
        on_s, on_cpu = max(f.per_s for f in on), min(f.cpu_us for f in on)
        out.append(
            {
                "sample": v,
                "off_per_s": off_s,
                "on_per_s": on_s,
                "on_vs_off": on_s / off_s,
                "off_cpu_us": off_cpu,
                "on_cpu_us": on_cpu,
                "cpu_ratio": off_cpu / on_cpu,
                "off_per_s_median": statistics.median(f.per_s for f in off),
                "on_per_s_median": statistics.median(f.per_s for f in on),
            }
        )
    return out


def run(
    n: int = 200_000,
    reps: int = 3,
    only: tuple[str, ...] = ("runtime", "memory", "sqlite"),
    kafka: str | None = None,
    samples: tuple[int, ...] = (1,),
) -> list[dict[str, Any]]:
    """Figures per measure and sample: ``{"measure", "n", "sample", "off_per_s", "on_per_s",
    "on_vs_off", "off_cpu_us", "on_cpu_us", "cpu_ratio", ...}``."""
    jobs: list[tuple[str, int, Callable[[int], Figure]]] = []
    if "runtime" in only:
        jobs.append(("runtime c=1", n, lambda m: runtime(n, 1, m)))
        jobs.append(("runtime c=8", n, lambda m: runtime(n, 8, m)))
    if "memory" in only:
        jobs.append(("memory c=8", n, lambda m: memory(n, 8, m)))
    if "sqlite" in only:
        small = min(n, 20_000)
        jobs.append(("sqlite c=8", small, lambda m: sqlite(small, 8, m)))
    topic = None
    if "kq" in only:
        if kafka is None:
            raise SystemExit("--only kq needs --kafka BOOTSTRAP")
        topic = _kafka_topic(kafka, n)
        jobs.append(("kq consume, 8 processors", n, lambda m: kq(kafka, n, m, topic)))
    results: list[dict[str, Any]] = []
    try:
        for name, count, fn in jobs:
            for fig in compare(fn, reps, samples):
                results.append({"measure": name, "n": count, **fig})
    finally:
        if kafka is not None and topic is not None:
            _drop_topic(kafka, topic)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=None, help="comma list of hooks,runtime,memory,sqlite,kq")
    ap.add_argument("--kafka", default=None, help="bootstrap servers; adds the kq measure")
    ap.add_argument(
        "--sample", default="1", help="comma list of metrics: {sample: N} to measure, e.g. 1,8"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    samples = tuple(int(x) for x in args.sample.split(","))
    only = tuple(args.only.split(",")) if args.only else ("hooks", "runtime", "memory", "sqlite")
    if args.kafka and not args.only:
        only = (*only, "kq")
    results = run(args.n, args.reps, only, args.kafka, samples)
    cost = hooks(samples) if "hooks" in only else None
    if args.json:
        print(json.dumps({"results": results, "hooks_ns": cost}, indent=2))
        return
    if cost is not None:
        print("middleware hooks, ns per message (best of 7):")
        for name, ns in cost.items():
            print(f"  {name:<16} {ns:>7.0f} ns")
    if not results:
        return
    print(
        f"{'measure':<26} {'sample':>6} {'off msg/s':>10} {'on msg/s':>10} {'on/off':>7}"
        f" {'off CPU':>9} {'on CPU':>9} {'on/off':>7}"
    )
    for r in results:
        print(
            f"{r['measure']:<26} {r['sample']:>6} {r['off_per_s']:>10,.0f} {r['on_per_s']:>10,.0f}"
            f" {r['on_vs_off']:>6.2f}x {r['off_cpu_us']:>6.2f} us {r['on_cpu_us']:>6.2f} us"
            f" {r['cpu_ratio']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
