"""The Scheduler on the embedded brokers, in one process: exactly once, catch-up, providers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.errors import NotSupported
from brokerq.schedule import FIRE_TIME, SCHEDULE, Schedule, Scheduler
from tests.brokerq.schedule import scenarios
from tests.brokerq.schedule.helpers import drain, fire_times, running

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
    scenarios.each_tick_once(broker, lambda: drain(broker))


def test_fire_time_header_is_the_tick_and_never_after_the_enqueue(broker: Broker) -> None:
    s = Schedule(name="beat", every=STEP)
    with running(Scheduler(broker, [s])):
        time.sleep(1.0)
    for m in drain(broker):
        tick = datetime.fromisoformat(m.headers[FIRE_TIME].replace("Z", "+00:00"))
        assert tick.timestamp() == pytest.approx(round(tick.timestamp() / STEP) * STEP)
        assert m.created_at >= tick.timestamp()  # never early


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", -1), ("none", 0)])
def test_catch_up_after_ten_missed_ticks(broker: Broker, catch_up: str, expected: int) -> None:
    scenarios.catch_up(broker, lambda: drain(broker), catch_up, expected, step=0.2)


def test_provider_adds_changes_and_removes_live(broker: Broker) -> None:
    scenarios.provider_live(broker, lambda: drain(broker))


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
