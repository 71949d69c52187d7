"""Rates: parsing, fixed windows, a worker that waits (no attempt used) and pause."""

from __future__ import annotations

import threading
import time

import pytest

from brokerq.embedded import MemoryBroker
from brokerq.message import Message
from brokerq.ratelimit import LocalRateLimiter, Rate, RateLimitConfig, RateLimits, parse_rate
from brokerq.testing.contract import Recorder, running, wait_for


def test_parse_rate() -> None:
    assert parse_rate("100/s") == Rate(100, 1.0)
    assert parse_rate("5/10s") == Rate(5, 10.0)
    assert parse_rate("600/m") == Rate(600, 60.0)
    for bad in ("soon", "0/s", "5", "-1/s"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_fixed_window_counts_and_says_how_long_to_wait() -> None:
    now = [100.2]
    limiter = LocalRateLimiter(clock=lambda: now[0])
    rate = Rate(2, 1.0)
    assert limiter.hit("k", rate) == 0.0
    assert limiter.hit("k", rate) == 0.0
    assert limiter.hit("k", rate) == pytest.approx(0.8)
    assert limiter.hit("other", rate) == 0.0
    now[0] = 101.0
    assert limiter.hit("k", rate) == 0.0


def test_over_the_limit_waits_without_using_an_attempt() -> None:
    broker = MemoryBroker()
    limits = RateLimits(broker.rate_limiter(), RateLimitConfig(limit="10/s"), broker.queue_name)
    with broker.producer() as p:
        for i in range(25):
            p.push(b"%d" % i)
    rec = Recorder()
    start = time.time()
    with running(broker, rec, concurrency=4, rate_limits=limits):
        broker.join(20)
    assert len(rec.seen) == 25 and all(m.attempt == 1 for m in rec.seen)
    # 25 starts at 10 per one-second window need at least two window changes
    assert rec.times[-1] - start >= 1.0
    per_window: dict[int, int] = {}
    for t in rec.times:
        per_window[int(t)] = per_window.get(int(t), 0) + 1
    assert max(per_window.values()) <= 10


def test_pause_stops_new_starts_and_resume_continues() -> None:
    broker = MemoryBroker()
    flag = threading.Event()
    with broker.producer() as p:
        for i in range(50):
            p.push(b"%d" % i)
    started: list[float] = []

    def slow(m: Message) -> None:
        started.append(time.time())
        time.sleep(0.05)

    with running(broker, slow, concurrency=3, paused=flag.is_set) as worker:
        assert wait_for(lambda: len(started) >= 5)
        flag.set()
        paused_at = time.time()
        assert wait_for(lambda: worker.paused, 5)
        time.sleep(1.0)
        late = [t for t in started if t > paused_at + 1.0]
        assert late == [], f"{len(late)} handler(s) started more than 1 s after the pause"
        count = len(started)
        time.sleep(0.5)
        assert len(started) == count
        flag.clear()
        broker.join(20)
    assert len(started) == 50
