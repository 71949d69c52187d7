"""dq ``delay_many`` vs ``delay`` one at a time (brokerq, 3 nodes, 2 copies needed).

N bodies of 100 B delayed by 1 s: one ``delay`` call each, then the same N through
``delay_many`` in chunks of ``CHUNK``, first call to last return. A producer without
``delay_many`` yet reports n/a. Target (issue 16): ``delay_many`` >= 3x ``delay``; the
other target, ``delay`` >= 0.5x a raw single-node put, is on the ``dq`` measure's row.
"""

from __future__ import annotations

import time

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.measures import dq_clients
from bench.measures.dq_rates import SIZE, brokerq_delay
from bench.timing import payload

CHUNK = 500  # jobs per delay_many call


def brokerq_delay_many(
    n: int, size: int, tube: str, delay: float, endpoints: list[str], chunk: int = CHUNK
) -> Figures:
    """brokerq's dq Producer: ``delay_many`` N bodies in chunks of ``chunk`` (child process)."""
    p = dq_clients.producer(endpoints, tube)
    many = getattr(p, "delay_many", None)
    if many is None:
        dq_clients.close(p)
        return {"na": "the dq Producer has no delay_many yet"}
    body = payload(size)
    chunks = [
        [b"%d:" % i + body for i in range(lo, min(n, lo + chunk))] for lo in range(0, n, chunk)
    ]
    try:  # delay_many(values, delay); the other shape a batch API takes: [(value, delay), ...]
        many(chunks[0][:1], delay)
        call = many
    except TypeError:
        many([(chunks[0][0], delay)])

        def call(values: list[bytes], d: float) -> object:
            return many([(v, d) for v in values])

    start = time.perf_counter()
    for values in chunks:
        call(values, delay)
    elapsed = time.perf_counter() - start
    dq_clients.close(p)
    return {"count": n, "elapsed_s": elapsed, "size": size, "nodes": 3, "chunk": chunk}


def run(r: Run) -> None:
    n = r.n("dq.delay")
    eps = list(r.settings.beanstalks)
    label = f"dq delay_many (chunks of {CHUNK}) vs delay one at a time"
    for rep in range(r.reps):
        for impl, fn in (("brokerq", brokerq_delay_many), ("delay x1", brokerq_delay)):
            tube = f"{r.tube('dq-many')}-{rep}"
            try:
                call = r.py(fn, n=n, size=SIZE, tube=tube, delay=1.0, endpoints=eps)
                r.measure("dq.delay_many", impl, label, call, rep)
            finally:
                r.drain(tube)


MEASURE = Measure(name="dq-delay-many", key="dqm", run=run, steps=2)
