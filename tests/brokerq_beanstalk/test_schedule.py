"""Schedules on dq (3 beanstalkd + Redis): exactly once per tick, catch-up, provider, takeover."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from brokerq.message import Message
from brokerq.schedule import Schedule, message_for
from brokerq_beanstalk import BeanstalkBroker
from brokerq_beanstalk.fires import BeanstalkFireStore
from tests.brokerq.schedule import scenarios
from tests.brokerq.schedule.helpers import drain
from tests.brokerq.schedule.procs import Lab, three_schedulers_twenty_seconds
from tests.brokerq_beanstalk.conftest import MakeConf

pytestmark = pytest.mark.integration


def drainer(broker: BeanstalkBroker) -> scenarios.Drain:
    return lambda: drain(broker, idle=1.0)


def test_three_schedulers_fire_each_tick_once(broker: BeanstalkBroker) -> None:
    scenarios.each_tick_once(broker, drainer(broker))


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", -1), ("none", 0)])
def test_catch_up_after_ten_missed_ticks(
    broker: BeanstalkBroker, catch_up: str, expected: int
) -> None:
    scenarios.catch_up(broker, drainer(broker), catch_up, expected)


def test_provider_adds_changes_and_removes_live(broker: BeanstalkBroker) -> None:
    scenarios.provider_live(broker, drainer(broker))


def test_a_dead_schedulers_claim_is_taken_over_and_runs_once(broker: BeanstalkBroker) -> None:
    s = Schedule(name="t", every=60)
    tick = datetime(2026, 1, 1, tzinfo=timezone.utc)
    message = message_for(s, "ns", tick)
    with broker.fire_store("ns") as store:
        assert isinstance(store, BeanstalkFireStore)
        # a scheduler claimed this fire and died before writing it (its claim expires in 0.5s)
        store._call("t", "SET", store._fire_key(message.id), "pending dead", "PX", 500)
        started = time.monotonic()
        assert store.fire("t", tick, message) is True  # waited for the claim, then wrote it
        assert time.monotonic() - started >= 0.3
        assert store.fire("t", tick, message) is False
        assert store.last_fire("t") == tick
    runs: list[Message] = drain(broker, idle=1.0)
    assert [m.id for m in runs] == [message.id]


def test_a_fire_written_twice_runs_once(broker: BeanstalkBroker) -> None:
    """The copy a taken-over fire writes again is stopped by the consumers' guard."""
    s = Schedule(name="t", every=60)
    tick = datetime(2026, 1, 1, tzinfo=timezone.utc)
    message = message_for(s, "ns", tick)
    with broker.fire_store("ns") as store:
        assert isinstance(store, BeanstalkFireStore)
        store._write(message, None)  # the first owner wrote it, then died before "done"
        assert store.fire("t", tick, message) is True
    runs = drain(broker, idle=1.0)
    assert [m.id for m in runs] == [message.id]


@pytest.fixture
def lab(tmp_path: Path, make_conf: MakeConf) -> Iterator[Lab]:
    conf = make_conf()
    nodes = ", ".join(f"{{endpoint: '{b.endpoint}', tube: '{b.tube}'}}" for b in conf.beanstalks)
    broker = (
        f"dq:\n  beanstalks: [{nodes}]\n"
        f"  redis: {{url: '{conf.redis.url}', prefix: '{conf.redis.prefix}'}}\n"
    )
    schedules = "schedules:\n  - {name: beat, every: 1s, catch_up: all}\n"
    lab = Lab(tmp_path, broker, schedules, name="dq-sched")
    yield lab
    lab.close()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill-9"])
def test_three_scheduler_processes_twenty_seconds(lab: Lab, kill: bool) -> None:
    three_schedulers_twenty_seconds(lab, kill)
