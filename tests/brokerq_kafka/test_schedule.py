"""Schedules on kq: a leader elected on a control topic writes each tick in a transaction,
fenced against zombies; every tick exactly once, catch-up after downtime and failover."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from brokerq.schedule import Schedule, message_for
from brokerq.testing.servers import delete_topics
from brokerq_kafka import KafkaBroker
from brokerq_kafka.fires import KafkaFireStore
from tests.brokerq.schedule import scenarios
from tests.brokerq.schedule.helpers import assert_each_tick_once, drain
from tests.brokerq.schedule.procs import Lab
from tests.contract import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def kq(broker: KafkaBroker, kafka_bootstrap: str) -> Iterator[KafkaBroker]:
    yield broker
    for suffix in (".schedules", ".schedules-leader"):
        delete_topics(kafka_bootstrap, [broker.conf.topic + suffix])


def drainer(broker: KafkaBroker) -> scenarios.Drain:
    return lambda: drain(broker, idle=3.0, first=20.0)


def test_three_schedulers_fire_each_tick_once(kq: KafkaBroker) -> None:
    scenarios.each_tick_once(kq, drainer(kq), step=0.5, seconds=12.0)


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", -1), ("none", 0)])
def test_catch_up_after_ten_missed_ticks(kq: KafkaBroker, catch_up: str, expected: int) -> None:
    scenarios.catch_up(kq, drainer(kq), catch_up, expected)


def test_provider_adds_changes_and_removes_live(kq: KafkaBroker) -> None:
    scenarios.provider_live(kq, drainer(kq))


def test_a_fenced_writer_cannot_fire_and_the_new_one_knows_its_fires(kq: KafkaBroker) -> None:
    s = Schedule(name="z", every=60)
    t1 = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    t2 = datetime(2026, 1, 1, 0, 2, tzinfo=timezone.utc)
    zombie = kq.fire_store("ns")
    assert isinstance(zombie, KafkaFireStore)
    zombie._take_over()
    assert zombie.fire("z", t1, message_for(s, "ns", t1)) is True
    fresh = kq.fire_store("ns")
    assert isinstance(fresh, KafkaFireStore)
    fresh._take_over()  # a new leader: fences the zombie, reads its committed fire
    assert fresh.last_fire("z") == t1
    assert fresh.fire("z", t1, message_for(s, "ns", t1)) is False
    with pytest.raises(Exception, match=r"(?i)fenc|epoch"):
        zombie.fire("z", t2, message_for(s, "ns", t2))
    assert fresh.fire("z", t2, message_for(s, "ns", t2)) is True
    zombie.close()
    fresh.close()
    ids = [m.id for m in drain(kq, idle=3.0, first=20.0)]
    assert sorted(ids) == sorted(message_for(s, "ns", t).id for t in (t1, t2))


def test_only_one_of_three_leads(kq: KafkaBroker) -> None:
    stores: list[Any] = [kq.fire_store("lead") for _ in range(3)]
    try:
        assert wait_for(lambda: sum(bool(s.active()) for s in stores) == 1, 60, interval=0.2)
        seen = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # never two at once, while the group settles
            leading = [i for i, s in enumerate(stores) if s.active()]
            assert len(leading) <= 1
            seen.update(leading)
            time.sleep(0.1)
        assert wait_for(lambda: sum(bool(s.active()) for s in stores) == 1, 60, interval=0.2)
        leader = next(s for s in stores if s.active())
        leader.close()
        rest = [s for s in stores if s is not leader]
        assert wait_for(lambda: sum(bool(s.active()) for s in rest) == 1, 60, interval=0.2)
    finally:
        for s in stores:
            s.close()


@pytest.fixture
def lab(tmp_path: Path, kq: KafkaBroker) -> Iterator[Lab]:
    c = kq.conf
    broker = (
        f"kq:\n  brokers: [{c.brokers[0]}]\n  topic: {c.topic}\n  group: {c.group}\n"
        "  offset: first\n  client_config: {session.timeout.ms: 6000, heartbeat.interval.ms: 500}\n"
    )
    schedules = "schedules:\n  - {name: beat, every: 1s, catch_up: all}\n"
    lab = Lab(tmp_path, broker, schedules, name="kq-sched")
    yield lab
    lab.close()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill-9-leader"])
def test_three_scheduler_processes_twenty_seconds(lab: Lab, kill: bool) -> None:
    lab.worker()
    schedulers = [lab.scheduler() for _ in range(3)]
    assert lab.wait_runs(2, timeout=60), [lab.stderr(p) for p in lab.procs]
    start = time.monotonic()
    if kill:
        time.sleep(8)
        leaders = [p for p in schedulers if "this scheduler leads" in lab.stderr(p)]
        assert len(leaders) >= 1
        lab.kill(leaders[-1])  # the one leading now (the last to have been told so)
    time.sleep(max(0.0, 20 - (time.monotonic() - start)))
    if kill:
        time.sleep(10)  # the failover (session timeout) and the catch-up of the ticks it missed
    for proc in schedulers:
        if proc.poll() is None:
            assert lab.stop(proc) == 0, lab.stderr(proc)
    lab.wait_quiet(3.0, timeout=60)
    ticks = assert_each_tick_once(lab.counts(), 1.0)
    assert len(ticks) >= 19, ticks
    early = [r for r in lab.runs() if r.lateness < 0]
    assert not early, early
