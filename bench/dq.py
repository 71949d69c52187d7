"""Benchmark of the dq backend against raw greenstalk, on the real services.

    .venv/bin/python bench/dq.py [--n 5000] [--timed 500] [--concurrency 8]

Prints, in one run: raw ``put`` to one node vs ``Producer.delay`` (3 nodes, 2 needed);
raw reserve+delete vs ``Consumer`` end to end with the Redis guard (claim, done mark,
replica clean-up); lateness percentiles of at-time jobs. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone

import greenstalk
import redis

from brokerq.message import Message
from brokerq_beanstalk import Consumer, DqConf, Producer
from brokerq_beanstalk.config import split_endpoint


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def cleanup(endpoints: list[str], tubes: list[str], redis_url: str, prefix: str) -> None:
    for endpoint in endpoints:
        for tube in tubes:
            with greenstalk.Client(split_endpoint(endpoint), use=tube, watch=tube) as c:
                for peek in (c.peek_ready, c.peek_delayed, c.peek_buried):
                    while True:
                        try:
                            c.delete(peek())
                        except greenstalk.NotFoundError:
                            break
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])


def run_consumer(conf: DqConf, total: int, on_msg: object = None) -> tuple[float, list[float]]:
    """Consume until ``total`` handled; return (seconds, lateness list)."""
    done = threading.Event()
    lateness: list[float] = []
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        now = time.time()
        with lock:
            if msg.not_before is not None:
                lateness.append(now - msg.not_before)
            else:
                lateness.append(0.0)
            if len(lateness) >= total:
                done.set()

    consumer = Consumer(conf, shutdown_timeout=10)
    t = threading.Thread(target=consumer.consume, args=(handler,), daemon=True)
    start = time.perf_counter()
    t.start()
    done.wait(600)
    elapsed = time.perf_counter() - start
    consumer.stop()
    t.join(30)
    return elapsed, lateness


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="jobs for throughput runs")
    ap.add_argument("--timed", type=int, default=500, help="at-time jobs for lateness")
    ap.add_argument("--window", type=float, default=3.0, help="seconds the at-times spread over")
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--endpoints", default="127.0.0.1:11300,127.0.0.1:11301,127.0.0.1:11302")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    endpoints = args.endpoints.split(",")
    run = secrets.token_hex(4)
    raw_tube, dq_tube, timed_tube = f"bench-raw-{run}", f"bench-dq-{run}", f"bench-at-{run}"
    prefix = f"bench-dq-{run}:"
    payload = b"x" * args.size

    def conf(tube: str) -> DqConf:
        return DqConf.model_validate(
            {
                "beanstalks": [{"endpoint": e, "tube": tube} for e in endpoints],
                "redis": {"url": args.redis, "prefix": prefix},
                "concurrency": args.concurrency,
            }
        )

    try:
        n = args.n
        print(f"dq bench: {n} jobs of {args.size} B, {len(endpoints)} nodes, run {run}")
        # 1. raw put, one node
        with greenstalk.Client(split_endpoint(endpoints[0]), use=raw_tube) as c:
            t0 = time.perf_counter()
            for _ in range(n):
                c.put(payload)
            raw_put = n / (time.perf_counter() - t0)
        # 2. Producer.delay, 3 copies, 2 needed
        with Producer.from_conf(conf(dq_tube)) as producer:
            t0 = time.perf_counter()
            for _ in range(n):
                producer.delay(payload, 0)
            dq_put = n / (time.perf_counter() - t0)
        print(f"put    raw greenstalk, 1 node : {raw_put:9.0f} jobs/s")
        print(
            f"delay  Producer, 3 nodes (2)  : {dq_put:9.0f} jobs/s  "
            f"({dq_put / raw_put:.2f}x raw; {3 * dq_put:.0f} copies/s)"
        )
        # 3. raw reserve + delete, one node
        with greenstalk.Client(split_endpoint(endpoints[0]), watch=raw_tube) as c:
            t0 = time.perf_counter()
            for _ in range(n):
                c.delete(c.reserve(timeout=5))
            raw_get = n / (time.perf_counter() - t0)
        # 4. Consumer end to end (3 copies per job, Redis guard)
        elapsed, _ = run_consumer(conf(dq_tube), n)
        dq_get = n / elapsed
        print(f"consume raw reserve+delete    : {raw_get:9.0f} jobs/s")
        print(
            f"consume Consumer + Redis guard: {dq_get:9.0f} jobs/s  ({dq_get / raw_get:.2f}x raw; "
            f"concurrency {args.concurrency}, no-op handler)"
        )
        # 5. lateness of at-time jobs
        with Producer.from_conf(conf(timed_tube)) as producer:
            base = datetime.now(timezone.utc) + timedelta(seconds=1.0)
            for i in range(args.timed):
                at = base + timedelta(seconds=args.window * i / args.timed)
                producer.at(payload, at)
        _, late = run_consumer(conf(timed_tube), args.timed)
        early = sum(1 for v in late if v < 0)
        print(
            f"lateness of {len(late)} at-time jobs over {args.window:.0f}s: "
            f"p50={pct(late, 50) * 1000:.1f}ms p99={pct(late, 99) * 1000:.1f}ms "
            f"max={max(late) * 1000:.1f}ms early={early}"
        )
    finally:
        cleanup(endpoints, [raw_tube, dq_tube, timed_tube], args.redis, prefix)


if __name__ == "__main__":
    main()
