"""kq push: brokerq's Pusher vs a raw confluent-kafka produce loop vs go-queue's Pusher.

Rates run from the first call to the last ack (brokerq and raw: ``flush()`` returned;
go-queue: ``Close()`` returned, acks=0). Same settings for brokerq and raw: acks as given,
idempotence with acks=all, lz4. 100 B and 1 KB values, acks=all and acks=1.
"""

from __future__ import annotations

import time
from typing import Any

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.timing import payload


def brokerq(
    n: int, size: int, topic: str, acks: str, bootstrap: str, with_id: bool = True
) -> Figures:
    """``Pusher.push`` ``n`` times, then ``flush()`` (child process)."""
    from brokerq_kafka import Pusher

    value = payload(size)
    with Pusher(bootstrap, topic, acks=acks, with_id=with_id) as pusher:
        push = pusher.push
        start = time.perf_counter()
        for _ in range(n):
            push(value)
        pusher.flush()
        elapsed = time.perf_counter() - start
    return {"count": n, "elapsed_s": elapsed, "acks": acks, "size": size}


def raw(n: int, size: int, topic: str, acks: str, bootstrap: str) -> Figures:
    """confluent-kafka ``produce`` ``n`` times (poll while the buffer is full), then flush."""
    from confluent_kafka import Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "enable.idempotence": acks == "all",
        "compression.type": "lz4",
    }
    p = Producer(conf)
    produce = p.produce
    value = payload(size)
    start = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    elapsed = time.perf_counter() - start
    return {"count": n, "elapsed_s": elapsed, "acks": acks, "size": size}


def run(r: Run) -> None:
    kafka = r.settings.kafka
    for size in (100, 1024):
        n = r.n(f"kq.push.{size}")
        ngq = r.n(f"gq.kq.push.{size}")
        size_label = f"{size} B" if size < 1000 else "1 KB"
        topics = {k: r.topic(f"push{k}{size}") for k in ("b1", "ball", "r1", "rall", "gq")}
        for rep in range(r.reps):
            for acks in ("all", "1"):
                m = f"kq.push.{size}.acks{acks}"
                label = f"kq push {size_label} acks={acks}"
                args = {"n": n, "size": size, "acks": acks, "bootstrap": kafka}
                r.measure(m, "brokerq", label, r.py(brokerq, topic=topics[f"b{acks}"], **args), rep)
                r.measure(m, "raw", label, r.py(raw, topic=topics[f"r{acks}"], **args), rep)
            r.measure(
                f"kq.push.{size}.gq",
                "go-queue",
                f"kq push {size_label} (go-queue Pusher, acks=0)",
                r.go("kq-push", topic=topics["gq"], n=ngq, size=size, brokers=kafka),
                rep,
            )


def run_without_id(r: Run) -> None:
    """100 B at acks=1 with ``Pusher(with_id=False)`` (no per-message id header) vs raw."""
    n = r.n("kq.push.100")
    label = "kq push 100 B acks=1, no id header"
    args = {"n": n, "size": 100, "acks": "1", "bootstrap": r.settings.kafka}
    topics = {k: r.topic(f"push{k}noid") for k in ("b", "r")}
    for rep in range(r.reps):
        call = r.py(brokerq, topic=topics["b"], with_id=False, **args)
        r.measure("kq.push.100.noid", "brokerq", label, call, rep)
        r.measure("kq.push.100.noid", "raw", label, r.py(raw, topic=topics["r"], **args), rep)


MEASURE = Measure(name="kq-push", key="kq", run=run, steps=10)
MEASURE_NO_ID = Measure(
    name="kq-push-noid", key="kqnoid", run=run_without_id, steps=2, default=False
)
