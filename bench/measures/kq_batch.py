"""kq consume with a batch handler (``list[Message]``, max_size 500) vs raw confluent-kafka.

The topic is filled once with N 100 B records; each repetition reads it with a fresh group:
brokerq's Queue (default 8 processors) calling a no-op ``handle(batch: list[Message])`` with
``batch: {max_size: 500, max_wait: 50ms}``, and the raw loop of kq_consume (``consume(500)``
with ``store_offsets`` per message). Rates run from the first handled batch to the one that
reaches N. Target (issue 16): brokerq >= 0.7x raw.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from bench.driver import Run
from bench.harness import Figures, run_python
from bench.measure import Measure
from bench.measures import kq_consume, kq_push
from bench.timing import FirstToNth, rss_mib
from brokerq.message import Message

MAX_SIZE = 500
MAX_WAIT = 0.05  # seconds


class BatchCounter(FirstToNth):
    """A no-op batch handler that counts what it was given."""

    calls = 0

    def handle(self, batch: list[Message]) -> None:
        self.calls += 1  # the handler threads race here; the mean size is an estimate
        self.add(len(batch))


class RssSampler:
    """This process's RSS every ``interval`` seconds, from ``start()`` to ``stop()``.

    Flatness is judged after a warm-up: "start" is the first sample once ``warm`` messages
    are handled (librdkafka's fetch queue and the interpreter's pools fill before that);
    the sample at the first batch is kept as ``rss_mib_first``.
    """

    def __init__(self, handled: Callable[[], int], warm: int, interval: float = 0.25) -> None:
        self.handled = handled
        self.warm = warm
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._t0 = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def _sample(self) -> None:
        t = time.perf_counter() - self._t0
        self.samples.append((t, rss_mib(os.getpid()), self.handled()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> Figures:
        self._stop.set()
        self._thread.join(5)
        self._sample()
        warm = [s for s in self.samples if s[2] >= self.warm] or self.samples[-1:]
        return {
            "rss_mib_first": self.samples[0][1],
            "rss_mib_start": warm[0][1],
            "rss_mib_end": warm[-1][1],
            "rss_mib_max": max(v for _, v, _ in self.samples),
            "rss_growth_mib": warm[-1][1] - warm[0][1],
            "seconds": warm[-1][0] - warm[0][0],
            "warm_after": self.warm,
            "samples": self.samples,
        }


def brokerq(
    n: int, topic: str, group: str, bootstrap: str, max_size: int = MAX_SIZE, rss: bool = False
) -> Figures:
    """A ``brokerq_kafka.Queue`` with a no-op batch handler until N are handled (child).

    With ``rss`` the process's RSS is sampled from the first batch to the N-th message
    (flat = judged after the first N/5, see RssSampler).
    """
    from brokerq.batch import BatchConfig, BatchHandler
    from brokerq_kafka import KqConf, Queue

    conf = KqConf(brokers=bootstrap.split(","), topic=topic, group=group, offset="first")
    counter = BatchCounter(n)
    sampler = RssSampler(lambda: counter.count, warm=n // 5)
    first = threading.Event()

    def handle(batch: list[Message]) -> None:
        if not first.is_set():
            first.set()
            if rss:
                sampler.start()
        counter.handle(batch)

    handler = BatchHandler(handle, BatchConfig(max_size=max_size, max_wait=MAX_WAIT))
    q = Queue(conf, handler)
    t = threading.Thread(target=q.start, daemon=True)
    t.start()
    elapsed = counter.result(240)
    out: Figures = {
        "count": n,
        "elapsed_s": elapsed,
        "processors": conf.processors,
        "max_size": max_size,
        "mean_batch": counter.count / max(1, counter.calls),
    }
    if rss:
        out.update(sampler.stop())
    q.stop()
    t.join(60)
    return out


def fill(r: Run, name: str, n: int) -> str:
    """A fresh topic with ``n`` 100 B records (raw producer, acks=1)."""
    t = r.topic(name)
    r.progress.step(f"fill {t} with {n:,} messages")
    run_python(kq_push.raw, n=n, size=100, topic=t, acks="1", bootstrap=r.settings.kafka)
    return t


def run(r: Run) -> None:
    n = r.n("kq.consume")
    kafka = r.settings.kafka
    label = f"kq consume, batch handler (max_size {MAX_SIZE}) vs raw"
    t = fill(r, "batch", n)
    for rep in range(r.reps):  # a fresh group per repetition reads the topic again
        g = f"{r.settings.run_id}-{rep}"
        m = "kq.consume.batch"
        call = r.py(brokerq, n=n, topic=t, group=f"bb-{g}", bootstrap=kafka)
        r.measure(m, "brokerq", label, call, rep)
        call = r.py(kq_consume.raw, n=n, topic=t, group=f"br-{g}", bootstrap=kafka)
        r.measure(m, "raw", label, call, rep)


def run_rss(r: Run) -> None:
    """RSS of a batch-handler consumer while it reads N records (issue 16: flat, <= 100 MB)."""
    n = r.n("kq.batch.rss")
    label = f"kq consumer RSS, batch handlers of {MAX_SIZE}, {n:,} messages"
    t = fill(r, "batchrss", n)
    call = r.py(
        brokerq,
        n=n,
        topic=t,
        group=f"brss-{r.settings.run_id}",
        bootstrap=r.settings.kafka,
        rss=True,
    )
    r.measure("kq.batch.rss", "brokerq", label, call)


MEASURE = Measure(name="kq-consume-batch", key="kqb", run=run, steps=2, extra_steps=1)
MEASURE_RSS = Measure(
    name="kq-batch-rss", key="kqbrss", run=run_rss, steps=1, repeated=False, extra_steps=1
)
