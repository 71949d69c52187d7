"""Helpers for scheduler tests: run schedulers in threads, drain fired messages, count ticks."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from brokerq.broker import Broker
from brokerq.message import Message
from brokerq.schedule import FIRE_TIME, SCHEDULE, Scheduler, parse_fire_time


@contextmanager
def running(*schedulers: Scheduler) -> Iterator[None]:
    """Run each scheduler in its own thread for the ``with`` body; stop and join them."""
    threads = [threading.Thread(target=s.run, daemon=True) for s in schedulers]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in schedulers:
            s.stop()
        for t in threads:
            t.join(10)
            assert not t.is_alive(), "scheduler did not stop"


def drain(broker: Broker, idle: float = 0.3, first: float | None = None) -> list[Message]:
    """Every message ready now (acked), until none arrives for ``idle`` seconds (``first``
    seconds for the first one: a Kafka source needs its partitions assigned)."""
    out: list[Message] = []
    with broker.source() as source:
        while True:
            delivery = source.receive(idle if out or first is None else first)
            if delivery is None:
                return out
            source.ack(delivery)
            out.append(delivery.message)


def fire_times(messages: list[Message], name: str | None = None) -> Counter[datetime]:
    """How many messages carry each brokerq-fire-time (of schedule ``name``, or any)."""
    return Counter(
        parse_fire_time(m.headers[FIRE_TIME])
        for m in messages
        if name is None or m.headers.get(SCHEDULE) == name
    )


def assert_each_tick_once(counts: Counter[datetime], step: float) -> list[datetime]:
    """No duplicate and no gap between the first and last tick; the ticks in order."""
    dupes = {t: n for t, n in counts.items() if n != 1}
    assert not dupes, f"ticks fired more than once: {dupes}"
    ticks = sorted(counts)
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != timedelta(seconds=step)]
    assert not gaps, f"gaps between ticks: {gaps}"
    return ticks
