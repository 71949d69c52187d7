"""Processes for the job-control tests (tests/brokerq_beanstalk/test_jobs.py).

``python dq_jobs_proc.py enqueue <conf json> <redis url> <key> <job id> <n>``: waits for the
key ``<key>go``, then calls ``delay(..., job_id=<job id>)`` n times; prints ``<ok> <duplicates>``.

``python dq_jobs_proc.py limited <conf json> <redis url> <key> <workers>``: runs ``<workers>``
Workers (one thread each) with ``rate_limit: {limit: 50/s}`` until SIGTERM; each handling
RPUSHes its unix start time to ``<key>starts``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import redis

from brokerq.errors import DuplicateJob
from brokerq.message import Message
from brokerq.ratelimit import RateLimitConfig, RateLimits
from brokerq.worker import Worker
from brokerq_beanstalk import BeanstalkBroker, DqConf


def enqueue(conf: DqConf, r: redis.Redis, key: str, job_id: str, n: int) -> None:
    broker = BeanstalkBroker(conf)
    producer = broker.producer()
    while not r.exists(f"{key}go"):
        time.sleep(0.005)
    ok = dup = 0
    for _ in range(n):
        try:
            producer.delay(b"order", 0.5, job_id=job_id)
            ok += 1
        except DuplicateJob:
            dup += 1
    producer.close()
    broker.close()
    print(ok, dup)


def limited(conf: DqConf, r: redis.Redis, key: str, workers: int) -> None:
    broker = BeanstalkBroker(conf)
    limits = RateLimitConfig(limit="50/s")

    def handler(msg: Message) -> None:
        r.rpush(f"{key}starts", repr(time.time()))

    running = [
        Worker(
            broker.source,
            concurrency=1,
            rate_limits=RateLimits(broker.rate_limiter(), limits, broker.queue_name),
            shutdown_timeout=5,
        )
        for _ in range(workers)
    ]
    threads = [threading.Thread(target=w.consume, args=(handler,)) for w in running]

    def stop_all(*_: object) -> None:
        for w in running:
            w.stop()

    signal.signal(signal.SIGTERM, stop_all)
    for t in threads:
        t.start()
    r.sadd(f"{key}started", str(len(threads)))
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    broker.close()


def main() -> None:
    mode, conf_json, url, key = sys.argv[1:5]
    conf = DqConf.model_validate_json(conf_json)
    r = redis.Redis.from_url(url)
    if mode == "enqueue":
        enqueue(conf, r, key, sys.argv[5], int(sys.argv[6]))
    else:
        limited(conf, r, key, int(sys.argv[5]))


if __name__ == "__main__":
    main()
