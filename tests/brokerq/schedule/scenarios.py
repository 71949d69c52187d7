"""Scheduler scenarios written once and run on every backend (memory, sqlite, dq, kq).

Each takes a broker (and, for draining, a function returning the messages fired so far).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from brokerq.broker import Broker
from brokerq.headers import SCHEDULE
from brokerq.message import Message
from brokerq.schedule import Schedule, Scheduler, fire_id
from tests.brokerq.schedule.helpers import assert_each_tick_once, fire_times, running
from tests.contract import wait_for

Drain = Callable[[], list[Message]]


def each_tick_once(broker: Broker, drain: Drain, step: float = 0.2, seconds: float = 3.0) -> None:
    """Three schedulers of one config on one broker: every tick enqueued exactly once."""
    s = Schedule(
        name="beat", every=step, json={"n": 1}, key="k", headers={"team": "ops"}, catch_up="all"
    )  # type: ignore[call-arg]  # json: the alias (the mypy plugin knows field names)
    schedulers = [Scheduler(broker, [s], namespace="ns") for _ in range(3)]
    with running(*schedulers):
        time.sleep(seconds)
    messages = drain()
    ticks = assert_each_tick_once(fire_times(messages), step)
    assert len(ticks) >= seconds / step * 0.6, ticks
    assert sum(x.fired for x in schedulers) == len(ticks)
    m = messages[0]
    assert m.value == b'{"n":1}' and m.key == b"k" and m.headers["team"] == "ops"
    assert m.headers[SCHEDULE] == "beat"
    assert {x.id for x in messages} == {fire_id("ns", "beat", t) for t in ticks}


def catch_up(broker: Broker, drain: Drain, policy: str, expected: int, step: float = 0.5) -> None:
    """Down for ten ticks (or more), then restarted: latest → 1 run, all → each, none → 0;
    no duplicate. ``expected``: 1, 0, or -1 for "every missed tick"."""
    s = Schedule(name="c", every=step, catch_up=policy)
    first = Scheduler(broker, [s], namespace="cu")
    with running(first):
        assert wait_for(lambda: first.fired >= 2, 20)
    last = first.last_fire("c")
    first.close()
    assert last is not None
    restart_at = last + timedelta(seconds=10 * step + 0.1)
    time.sleep(max(0.0, (restart_at - datetime.now(timezone.utc)).total_seconds()))
    second = Scheduler(broker, [s], namespace="cu")
    with running(second):
        assert wait_for(lambda: (second.last_fire("c") or last) >= restart_at, 20)
        time.sleep(step)
    second.close()
    counts = fire_times(drain())
    assert all(n == 1 for n in counts.values()), counts
    assert second.activated_at is not None
    missed = [t for t in s.fires(last, second.activated_at)]
    assert len(missed) >= 10
    caught = [t for t in missed if t in counts]
    if expected == 1:
        assert caught == [missed[-1]], (caught, missed)
    elif expected == 0:
        assert caught == [], caught
    else:
        assert caught == missed, (caught, missed)
    assert any(t > second.activated_at for t in counts)  # and it goes on


def provider_live(broker: Broker, drain: Drain, step: float = 0.2) -> None:
    """A provider adds, changes and removes schedules; each change is live within sync_interval."""
    current = [Schedule(name="a", every=step)]
    scheduler = Scheduler(broker, provider=lambda: list(current), sync_interval=0.3)
    with running(scheduler):
        time.sleep(1.0)
        current.append(Schedule(name="b", every=step))
        time.sleep(1.0)
        changed_at = datetime.now(timezone.utc)
        current[:] = [Schedule(name="b", every=step * 2)]
        time.sleep(0.4)  # > sync_interval: the change is live
        applied_at = datetime.now(timezone.utc)
        time.sleep(1.6)
    messages = drain()
    a = fire_times(messages, "a")
    b = fire_times(messages, "b")
    assert a and max(a) < applied_at  # removed: stops firing
    assert b and min(b) > changed_at - timedelta(seconds=1.4)  # added: fires
    late_b = sorted(t for t in b if t > applied_at)
    assert len(late_b) >= 3
    assert all((y - x) == timedelta(seconds=2 * step) for x, y in itertools.pairwise(late_b))
