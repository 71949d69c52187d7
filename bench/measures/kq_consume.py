"""kq consume: brokerq's Queue (8 processors, no-op handler) vs a raw consume loop vs go-queue.

The topic is filled once with N 100 B records; each repetition reads it with a fresh group.
Rates run from the first handled message to the N-th (the group join is not in them).
"""

from __future__ import annotations

import threading
import time

from bench.driver import Run
from bench.harness import Figures, run_python
from bench.measure import Measure
from bench.measures import kq_push
from bench.timing import FirstToNth

PROCESSORS = 8


def brokerq(n: int, topic: str, group: str, bootstrap: str) -> Figures:
    """A ``brokerq_kafka.Queue`` from the earliest offset until N are handled (child process)."""
    from brokerq_kafka import KqConf, Queue

    conf = KqConf(
        brokers=bootstrap.split(","),
        topic=topic,
        group=group,
        offset="first",
        processors=PROCESSORS,
    )
    counter = FirstToNth(n)
    q = Queue(conf, counter.hit)
    t = threading.Thread(target=q.start, daemon=True)
    t.start()
    elapsed = counter.result(240)
    q.stop()
    t.join(60)
    return {"count": n, "elapsed_s": elapsed, "processors": PROCESSORS}


def raw(n: int, topic: str, group: str, bootstrap: str) -> Figures:
    """confluent-kafka ``consume(500)`` batches with ``store_offsets`` per message."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.offset.store": False,
        }
    )
    c.subscribe([topic])
    seen = 0
    start: float | None = None
    while seen < n:
        for m in c.consume(500, 1.0):
            if m.error():
                continue
            if start is None:
                start = time.perf_counter()
            c.store_offsets(m)
            seen += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    c.close()
    return {"count": n, "elapsed_s": elapsed}


def run(r: Run) -> None:
    n = r.n("kq.consume")
    kafka = r.settings.kafka
    label = f"kq consume no-op ({PROCESSORS} processors)"
    t = r.topic("consume")
    r.progress.step(f"{label} — fill {n:,} messages")
    run_python(kq_push.raw, n=n, size=100, topic=t, acks="1", bootstrap=kafka)
    for rep in range(r.reps):  # a fresh group per repetition reads the topic again
        g = f"{r.settings.run_id}-{rep}"
        m = "kq.consume"
        r.measure(
            m, "brokerq", label, r.py(brokerq, n=n, topic=t, group=f"b-{g}", bootstrap=kafka), rep
        )
        r.measure(m, "raw", label, r.py(raw, n=n, topic=t, group=f"r-{g}", bootstrap=kafka), rep)
        go = r.go(
            "kq-consume",
            topic=t,
            group=f"g-{g}",
            n=n,
            brokers=kafka,
            processors=PROCESSORS,
            timeout="180s",
        )
        r.measure(m, "go-queue", label, go, rep)


MEASURE = Measure(name="kq-consume", key="kqc", run=run, steps=3, extra_steps=1)
