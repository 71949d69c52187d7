"""dq ``delay_many`` vs ``delay`` one at a time (brokerq, 3 nodes, 2 copies needed).

N bodies of 100 B delayed by 1 s: one ``delay`` call each, then the same N through
``delay_many([(value, delay), ...])`` in chunks of ``CHUNK``, first call to last return (a job
that failed fails the measure). Target (issue 16): ``delay_many`` >= 3x ``delay``; the
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
    body = payload(size)
    chunks = [
        [(b"%d:" % i + body, delay) for i in range(lo, min(n, lo + chunk))]
        for lo in range(0, n, chunk)
    ]
    start = time.perf_counter()
    for jobs in chunks:
        failed = [r for r in p.delay_many(jobs) if not isinstance(r, str)]
        if failed:
            dq_clients.close(p)
            raise failed[0]
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
