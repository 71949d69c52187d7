"""dq delay and dq consume: brokerq (3 nodes, 2 copies needed; Redis guard) vs raw greenstalk
on one node vs go-queue.

delay: N ``delay(body, 1 s)`` calls, first to last. consume: the N jobs (all ready by then)
end to end with a no-op handler, first handled to N-th.
"""

from __future__ import annotations

import threading
import time

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.measures import dq_clients
from bench.timing import FirstToNth, payload
from brokerq.testing.servers import split_endpoint

SIZE = 100


def brokerq_delay(n: int, size: int, tube: str, delay: float, endpoints: list[str]) -> Figures:
    """brokerq's dq Producer: ``delay`` N bodies of ``size`` bytes (child process)."""
    p = dq_clients.producer(endpoints, tube)
    body = payload(size)
    start = time.perf_counter()
    for i in range(n):
        p.delay(b"%d:" % i + body, delay)
    elapsed = time.perf_counter() - start
    dq_clients.close(p)
    return {"count": n, "elapsed_s": elapsed, "size": size, "nodes": 3}


def raw_delay(n: int, size: int, tube: str, delay: float, endpoints: list[str]) -> Figures:
    """greenstalk ``put`` on the first node (priority 2, ttr 5, like go-queue)."""
    import greenstalk

    c = greenstalk.Client(split_endpoint(endpoints[0]), encoding=None, use=tube)
    body = payload(size)
    start = time.perf_counter()
    for i in range(n):
        c.put(b"%d:" % i + body, priority=2, delay=int(delay), ttr=5)
    elapsed = time.perf_counter() - start
    c.close()
    return {"count": n, "elapsed_s": elapsed, "size": size, "nodes": 1}


def brokerq_consume(
    n: int, tube: str, endpoints: list[str], redis_url: str, redis_prefix: str
) -> Figures:
    """brokerq's dq Consumer with a no-op handler until N are handled."""
    cons = dq_clients.consumer(endpoints, tube, redis_url, redis_prefix)
    c = FirstToNth(n)
    t = threading.Thread(target=cons.consume, args=(c.hit,), daemon=True)
    start = time.perf_counter()
    t.start()
    elapsed = c.result(180)
    total = c.last - start
    dq_clients.stop(cons)
    t.join(15)
    return {"count": n, "elapsed_s": elapsed, "total_s": total, "nodes": 3}


def raw_consume(n: int, tube: str, endpoints: list[str]) -> Figures:
    """greenstalk reserve + delete on the first node."""
    import greenstalk

    c = greenstalk.Client(split_endpoint(endpoints[0]), watch=tube)
    start = time.perf_counter()
    first = 0.0
    for i in range(n):
        job = c.reserve(timeout=30)
        if i == 0:
            first = time.perf_counter()
        c.delete(job)
    last = time.perf_counter()
    c.close()
    return {"count": n, "elapsed_s": last - first, "total_s": last - start, "nodes": 1}


def run(r: Run) -> None:
    s = r.settings
    n = r.n("dq.delay")
    eps = list(s.beanstalks)
    guard = {"redis_url": s.redis_url, "redis_prefix": s.redis_prefix}
    for rep in range(r.reps):
        for impl in ("brokerq", "raw", "go-queue"):
            tube = f"{r.tube(f'dq-{impl}')}-{rep}"
            if impl == "brokerq":
                put = r.py(brokerq_delay, n=n, size=SIZE, tube=tube, delay=1.0, endpoints=eps)
                consume = r.py(brokerq_consume, n=n, tube=tube, endpoints=eps, **guard)
            elif impl == "raw":
                put = r.py(raw_delay, n=n, size=SIZE, tube=tube, delay=1.0, endpoints=eps)
                consume = r.py(raw_consume, n=n, tube=tube, endpoints=eps)
            else:
                flags = {"tube": tube, "n": n, "endpoints": ",".join(eps)}
                put = r.go("dq-delay", size=SIZE, delay="1s", **flags)
                consume = r.go("dq-consume", redis=s.redis_address, timeout="180s", **flags)
            try:
                if r.measure("dq.delay", impl, "dq delay 100 B (3 nodes, min 2)", put, rep):
                    time.sleep(1.2)  # every job ready before the consumer starts
                    r.measure("dq.consume", impl, "dq consume e2e (Redis guard)", consume, rep)
            finally:
                r.drain(tube)


MEASURE = Measure(name="dq", key="dq", run=run, steps=6)
