"""dq at: lateness of jobs scheduled for an exact time (brokerq vs go-queue).

N jobs due ``lead`` seconds from now, spread over ``spread`` seconds; each body carries its
due time in unix nanoseconds (go-queue's wire form), the handler records now - due.
Early (negative) lateness is a broken promise; go-queue truncates delays to whole seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.measures import dq_clients
from bench.timing import FirstToNth, lateness_stats


def brokerq(
    n: int,
    tube: str,
    lead: float,
    spread: float,
    endpoints: list[str],
    redis_url: str,
    redis_prefix: str,
) -> Figures:
    """brokerq's dq Producer ``at`` and Consumer (child process)."""
    late: list[float] = []
    lock = threading.Lock()
    c = FirstToNth(n)

    def handle(msg: Any) -> None:  # a brokerq Message
        t = time.time_ns()
        body = getattr(msg, "value", getattr(msg, "body", msg))
        if isinstance(body, str):
            body = body.encode()
        target = int(bytes(body).split(b":", 1)[0])
        with lock:
            late.append((t - target) / 1e6)
        c.hit()

    cons = dq_clients.consumer(endpoints, tube, redis_url, redis_prefix)
    th = threading.Thread(target=cons.consume, args=(handle,), daemon=True)
    th.start()
    p = dq_clients.producer(endpoints, tube)
    base = time.time() + lead
    for i in range(n):
        at = base + spread * i / n
        p.at(b"%d:%d" % (int(at * 1e9), i), datetime.fromtimestamp(at, tz=timezone.utc))
    c.result(lead + spread + 60)
    dq_clients.stop(cons)
    dq_clients.close(p)
    th.join(15)
    return {"count": n, "elapsed_s": lead + spread, **lateness_stats(late)}


def run(r: Run) -> None:
    s = r.settings
    n = r.n("dq.at")
    lead, spread = (2.0, 3.0) if s.quick else (2.0, 5.0)
    label = f"dq at: lateness ({n} jobs over {spread:.0f} s)"
    eps = list(s.beanstalks)
    for impl in ("brokerq", "go-queue"):
        tube = r.tube(f"at-{impl}")
        if impl == "brokerq":
            call = r.py(
                brokerq,
                n=n,
                tube=tube,
                lead=lead,
                spread=spread,
                endpoints=eps,
                redis_url=s.redis_url,
                redis_prefix=s.redis_prefix,
            )
        else:
            call = r.go(
                "dq-at",
                tube=tube,
                n=n,
                lead=f"{lead}s",
                spread=f"{spread}s",
                endpoints=",".join(eps),
                redis=s.redis_address,
            )
        try:
            r.measure("dq.at", impl, label, call)
        finally:
            r.drain(tube)


MEASURE = Measure(name="dq-at", key="at", run=run, steps=2, repeated=False)
