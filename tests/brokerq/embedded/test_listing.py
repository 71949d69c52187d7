"""Broker.jobs (jobs by state, paged) and stats()["oldest_age_seconds"] on memory and sqlite."""

from __future__ import annotations

import time

import pytest

from brokerq.broker import Broker
from brokerq.outcome import Failure


@pytest.fixture(params=["memory", "sqlite"])
def broker(request: pytest.FixtureRequest) -> Broker:
    fixture: Broker = request.getfixturevalue(f"{request.param}_broker")
    return fixture


def test_jobs_by_state_in_order_and_paged(broker: Broker) -> None:
    with broker.producer() as p:
        for i in range(5):
            p.push(f"job-{i}")
    with broker.delay_producer() as d:
        later = d.delay(b"later", 3600)
    with broker.source() as source:
        first = source.receive(5)
        assert first is not None
        second = source.receive(5)
        assert second is not None
        source.dead(second, Failure("ValueError", "bad"))
        pending = broker.jobs("pending", 10)
        assert [j.message.value for j in pending if j.message] == [b"job-2", b"job-3", b"job-4"]
        assert {j.state for j in pending} == {"pending"}
        assert [j.message.value for j in broker.jobs("pending", 2, 1) if j.message] == [
            b"job-3",
            b"job-4",
        ]
        (delayed,) = broker.jobs("delayed")
        assert delayed.id == later and delayed.state == "delayed"
        assert delayed.due is not None and delayed.due > time.time() + 3000
        (running,) = broker.jobs("running")
        assert running.id == first.message.id and running.state == "running"
        (dead,) = broker.jobs("dead")
        assert dead.id == second.message.id and dead.last_error and "bad" in dead.last_error
        assert broker.jobs("pending", 10, 50) == []
        source.ack(first)
    assert broker.jobs("running") == []
    with pytest.raises(ValueError, match="state must be one of"):
        broker.jobs("nonsense")


def test_oldest_age_is_the_wait_of_the_oldest_runnable_job(broker: Broker) -> None:
    assert broker.stats()["oldest_age_seconds"] == 0
    with broker.delay_producer() as d:
        d.schedule(b"far future", time.time() + 3600)
    assert broker.stats()["oldest_age_seconds"] == 0  # not runnable yet: not waiting
    with broker.delay_producer() as d:
        d.schedule(b"overdue", time.time() - 100)  # due 100 s ago, no worker took it
    with broker.producer() as p:
        p.push(b"fresh")
    age = broker.stats()["oldest_age_seconds"]
    assert 100 <= age < 200
