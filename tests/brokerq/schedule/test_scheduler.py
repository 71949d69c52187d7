"""The Scheduler on the embedded brokers, in one process: exactly once, catch-up, providers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.errors import NotSupported
from brokerq.schedule import FIRE_TIME, SCHEDULE, Schedule, Scheduler, fire_id
from tests.brokerq.schedule.helpers import assert_each_tick_once, drain, fire_times, running
from tests.contract import wait_for

STEP = 0.2


@pytest.fixture(params=["memory", "sqlite"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    b: Broker
    if request.param == "memory":
        b = MemoryBroker()
    else:
        b = SqliteBroker({"path": str(tmp_path / "jobs.db"), "poll_interval": "10ms"})
    yield b
    b.close()


def test_three_schedulers_fire_each_tick_once(broker: Broker) -> None:
    s = Schedule(name="beat", every=STEP, json={"n": 1}, key="k", headers={"team": "ops"})
    schedulers = [Scheduler(broker, [s], namespace="ns") for _ in range(3)]
    with running(*schedulers):
        time.sleep(3.0)
    messages = drain(broker)
    ticks = assert_each_tick_once(fire_times(messages), STEP)
    assert len(ticks) >= 12
    assert sum(x.fired for x in schedulers) == len(ticks)
    m = messages[0]
    assert m.value == b'{"n":1}' and m.key == b"k" and m.headers["team"] == "ops"
    assert m.headers[SCHEDULE] == "beat"
    assert m.id == fire_id("ns", "beat", ticks[0])


def test_fire_time_header_is_the_tick_and_never_after_the_enqueue(broker: Broker) -> None:
    s = Schedule(name="beat", every=STEP)
    with running(Scheduler(broker, [s])):
        time.sleep(1.0)
    for m in drain(broker):
        tick = datetime.fromisoformat(m.headers[FIRE_TIME].replace("Z", "+00:00"))
        assert tick.timestamp() == pytest.approx(round(tick.timestamp() / STEP) * STEP)
        assert m.created_at >= tick.timestamp()  # never early


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", 10), ("none", 0)])
def test_catch_up_after_ten_missed_ticks(broker: Broker, catch_up: str, expected: int) -> None:
    step = 0.5
    s = Schedule(name="c", every=step, catch_up=catch_up)
    first = Scheduler(broker, [s], namespace="cu")
    with running(first):
        assert wait_for(lambda: first.fired >= 2, 10)
    last = first.last_fire("c")
    assert last is not None
    # down for ten ticks: restart just after the tenth missed tick
    restart_at = last + timedelta(seconds=10 * step + 0.1)
    time.sleep(max(0.0, (restart_at - datetime.now(timezone.utc)).total_seconds()))
    second = Scheduler(broker, [s], namespace="cu")
    with running(second):
        assert wait_for(lambda: (second.last_fire("c") or last) >= restart_at, 10)
        time.sleep(step)
    counts = fire_times(drain(broker))
    assert all(n == 1 for n in counts.values()), counts
    missed = [last + timedelta(seconds=step * i) for i in range(1, 11)]
    caught = [t for t in missed if t in counts]
    assert len(caught) == expected, (caught, sorted(counts))
    if expected == 1:
        assert caught == [missed[-1]]
    assert any(t > restart_at for t in counts)  # and it goes on


def test_provider_adds_changes_and_removes_live(broker: Broker) -> None:
    current = [Schedule(name="a", every=STEP)]
    scheduler = Scheduler(broker, provider=lambda: list(current), sync_interval=0.3)
    with running(scheduler):
        time.sleep(1.0)
        current.append(Schedule(name="b", every=STEP))
        time.sleep(1.0)
        changed_at = datetime.now(timezone.utc)
        current[:] = [Schedule(name="b", every=STEP * 2)]
        time.sleep(0.4)  # > sync_interval: the change is live
        applied_at = datetime.now(timezone.utc)
        time.sleep(1.6)
    messages = drain(broker)
    a = fire_times(messages, "a")
    b = fire_times(messages, "b")
    assert a and max(a) < applied_at  # removed: stops firing within sync_interval
    assert b and min(b) > changed_at - timedelta(seconds=1.4)
    late_b = sorted(t for t in b if t > applied_at)
    assert len(late_b) >= 3
    assert all((y - x) == timedelta(seconds=2 * STEP) for x, y in itertools.pairwise(late_b))


def test_a_failing_provider_keeps_the_schedules(broker: Broker) -> None:
    calls = []

    def provider() -> list[Schedule]:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("database down")
        return [Schedule(name="a", every=STEP)]

    scheduler = Scheduler(broker, provider=provider, sync_interval=0.2)
    with running(scheduler):
        time.sleep(1.5)
    assert len(calls) > 2
    assert len(fire_times(drain(broker), "a")) >= 5


def test_fire_now_enqueues_one_run_and_leaves_the_last_fire(broker: Broker) -> None:
    s = Schedule(name="n", cron="0 0 1 1 *", value="manual")
    scheduler = Scheduler(broker, [s], namespace="m")
    job_id = scheduler.fire_now("n")
    assert scheduler.last_fire("n") is None
    [m] = drain(broker)
    assert m.id == job_id and m.value == b"manual" and m.headers[SCHEDULE] == "n"
    with pytest.raises(KeyError):
        scheduler.fire_now("nope")
    scheduler.close()


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="used twice"):
        Scheduler(MemoryBroker(), [Schedule(name="a", every=1), Schedule(name="a", every=2)])


def test_a_broker_without_fire_store_says_so() -> None:
    class Plain(MemoryBroker):
        def fire_store(self, namespace: str) -> object:  # type: ignore[override]
            return Broker.fire_store(self, namespace)

    with pytest.raises(NotSupported, match="cannot run schedules"):
        Scheduler(Plain(), [Schedule(name="a", every=1)]).run()
