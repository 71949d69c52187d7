"""dq consumer RSS: memory of an idle consumer while many delayed jobs wait (brokerq vs go-queue).

N jobs delayed by an hour are loaded (pipelined, one node); a consumer process runs on the
tube and its RSS is sampled every 0.5 s. A consumer that holds delayed jobs in memory grows;
one that leaves them to beanstalkd stays flat. The jobs are deleted at the end.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from functools import partial
from typing import Any

from bench import harness
from bench.driver import Run
from bench.harness import Figures
from bench.measure import Measure
from bench.measures import dq_clients
from bench.timing import payload, rss_mib
from brokerq.testing.servers import RawBeanstalk


def idle_consumer(
    tube: str, seconds: float, endpoints: list[str], redis_url: str, redis_prefix: str
) -> Figures:
    """A brokerq dq Consumer on ``tube`` for ``seconds``; prints READY once it runs."""
    cons = dq_clients.consumer(endpoints, tube, redis_url, redis_prefix)
    handled = [0]

    def handle(msg: Any) -> None:
        handled[0] += 1

    t = threading.Thread(target=cons.consume, args=(handle,), daemon=True)
    t.start()
    print(harness.READY, flush=True)  # the parent starts sampling after this line
    time.sleep(seconds)
    dq_clients.stop(cons)
    t.join(10)
    return {"handled": handled[0]}


def sample(r: Run, tube: str, seconds: float, impl: str) -> Figures:
    """RSS of a consumer process on ``tube`` (every job delayed), every 0.5 s."""
    s = r.settings
    if impl == "brokerq":
        cmd = harness.python_command(
            idle_consumer,
            tube=tube,
            seconds=seconds + 5,
            endpoints=list(s.beanstalks),
            redis_url=s.redis_url,
            redis_prefix=s.redis_prefix,
        )
    else:  # go-queue's Consumer, told to wait for more jobs than there will be
        cmd = harness.go_command(
            s.goqueue,
            "dq-consume",
            tube=tube,
            n=1_000_000_000,
            timeout=f"{seconds + 10:.0f}s",
            endpoints=",".join(s.beanstalks),
            redis=s.redis_address,
        )
    p = harness.spawn(cmd)
    try:
        assert p.stdout is not None
        if impl == "brokerq":
            line = p.stdout.readline()
            if not line.startswith(harness.READY):
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"consumer did not start: {line!r} {err[-800:]}")
        time.sleep(1.0)  # let it connect to every node and to Redis
        samples: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            samples.append((time.perf_counter() - t0, rss_mib(p.pid)))
            time.sleep(0.5)
        if impl != "brokerq":
            p.kill()
        out, _err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    handled = 0
    for ln in out.splitlines():
        if ln.startswith(harness.RESULT):
            handled = json.loads(ln[len(harness.RESULT) :]).get("handled", 0)
    vals = [v for _, v in samples]
    half = len(vals) // 2
    return {
        "rss_mib_start": vals[0],
        "rss_mib_end": vals[-1],
        "rss_mib_max": max(vals),
        "rss_mib_first_half_mean": statistics.mean(vals[:half] or vals),
        "rss_mib_second_half_mean": statistics.mean(vals[half:] or vals),
        "rss_growth_mib": vals[-1] - vals[0],
        "seconds": seconds,
        "samples": samples,
        "handled": handled,
    }


def run(r: Run) -> None:
    s = r.settings
    jobs = s.rss_jobs if s.rss_jobs is not None else r.n("rss")
    seconds = 8.0 if s.quick else 20.0
    tube = r.tube("rss")
    label = f"dq consumer RSS, {jobs:,} delayed jobs waiting"
    r.progress.step(f"{label} — loading")
    try:
        t0 = time.perf_counter()
        body = payload(100)
        with RawBeanstalk(s.beanstalks[0], timeout=120) as b:
            loaded = b.put_many(
                tube,
                (b"%d:" % i + body for i in range(jobs)),
                delay=3600,
                window=5000,
                progress=lambda k: r.progress.status(f"loaded {k:,} / {jobs:,}"),
            )
        load_s = time.perf_counter() - t0
        r.note(
            f"loaded {loaded:,} delayed jobs in {load_s:.1f} s ({loaded / load_s:,.0f}/s, pipelined)"
        )
        r.progress.step(f"{label} — sampling {seconds:.0f} s")
        for impl in ("brokerq", "go-queue"):
            fig = r.measure("dq.rss", impl, label, partial(sample, r, tube, seconds, impl))
            if fig is not None:
                fig["load_s"] = load_s
                fig["jobs"] = loaded
    finally:
        r.progress.step(f"{label} — deleting the jobs")
        t0 = time.perf_counter()
        deleted = r.drain(tube)
        r.note(f"deleted {deleted:,} jobs in {time.perf_counter() - t0:.1f} s")


MEASURE = Measure(name="dq-rss", key="rss", run=run, steps=5, repeated=False)
