"""delay_many / at_many in the core: validation once per job, one result per job in order,
a failed job never fails the others (brokerq.batch_enqueue), on the memory broker and on a
producer that only has ``schedule``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from brokerq.batch_enqueue import DelayedJob, ScheduledJob
from brokerq.broker import DelayProducer
from brokerq.embedded import MemoryBroker
from brokerq.errors import DeliveryError
from brokerq.middleware import Middleware
from tests.contract import Recorder, running, wait_for


class Scheduling(DelayProducer):
    """A DelayProducer with only ``schedule``: records what it got, fails values b"fail"."""

    max_delay = 3600.0

    def __init__(self) -> None:
        self.got: list[tuple[bytes | str, float, dict[str, object]]] = []

    def schedule(self, value: bytes | str, due: float, **options: object) -> str:
        if value == b"fail":
            raise DeliveryError("refused")
        self.got.append((value, due, options))
        return f"id-{len(self.got)}"

    def revoke(self, job_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


def test_one_result_per_job_in_order_and_errors_in_their_slots() -> None:
    p = Scheduling()
    now = time.time()
    results = p.delay_many(
        [
            (b"a", 1),
            (b"neg", -1),
            DelayedJob(b"b", delay=timedelta(seconds=2), key=b"k", priority=3, type="t"),
            (b"fail", 1),
            "not a job",  # type: ignore[list-item]
            DelayedJob(b"both", delay=1, when=datetime.now(timezone.utc)),
            DelayedJob(b"neither"),
            (b"far", 7200),
            DelayedJob(b"badid", delay=1, job_id="has space"),
            (b"c", 0),
        ]
    )
    assert results[0] == "id-1" and results[2] == "id-2" and results[9] == "id-3"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], DeliveryError)
    assert isinstance(results[4], TypeError)
    assert isinstance(results[5], ValueError) and isinstance(results[6], ValueError)
    assert isinstance(results[7], ValueError) and "3600" in str(results[7])  # max_delay
    assert isinstance(results[8], ValueError)
    (v1, due1, _), (v2, due2, opts2), (v3, due3, _) = p.got
    assert (v1, v2, v3) == (b"a", b"b", b"c")
    assert now + 1 <= due1 < now + 2 and now + 2 <= due2 < now + 3 and now <= due3 < now + 1
    assert opts2["key"] == b"k" and opts2["priority"] == 3 and opts2["type"] == "t"


def test_at_many_takes_times_and_refuses_delays() -> None:
    p = Scheduling()
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    results = p.at_many(
        [
            (b"a", when),
            (b"b", 5),  # type: ignore[list-item]
            (b"c", when - timedelta(seconds=60)),
            DelayedJob(b"d", delay=1),
        ]
    )
    assert results[0] == "id-1" and results[3] == "id-2"
    assert isinstance(results[1], TypeError)  # a delay where a time is due
    assert isinstance(results[2], ValueError)  # in the past
    assert p.got[0][1] == when.timestamp()


def test_nothing_valid_calls_nothing() -> None:
    p = Scheduling()
    assert p.delay_many([]) == []
    results = p.delay_many([(b"x", -1)])
    assert len(results) == 1 and isinstance(results[0], ValueError)
    assert p.got == []


def test_a_backend_returning_too_few_results_is_a_bug_not_a_silent_loss() -> None:
    class Short(Scheduling):
        def schedule_many(self, jobs: object) -> list[str | Exception]:
            return []

    with pytest.raises(RuntimeError, match="0 results for 1"):
        Short().delay_many([(b"x", 1)])


def test_scheduled_job_options_match_schedule_keywords() -> None:
    job = ScheduledJob(b"v", 1.0, key=b"k", headers={"h": "1"}, time_limit=2.0)
    assert job.options() == {
        "key": b"k",
        "headers": {"h": "1"},
        "job_id": None,
        "unique_for": None,
        "priority": None,
        "time_limit": 2.0,
        "type": None,
    }


class Hooks(Middleware):
    def __init__(self) -> None:
        self.before = 0
        self.after: list[BaseException | None] = []

    def before_push(self, queue: str, headers: dict[str, str]) -> None:
        self.before += 1
        headers["traced"] = "yes"

    def after_push(self, queue: str, error: BaseException | None) -> None:
        self.after.append(error)


def test_memory_broker_runs_every_job_once_at_its_time_with_push_hooks() -> None:
    broker = MemoryBroker()
    hooks = Hooks()
    broker.add_middleware(hooks)
    with broker.delay_producer() as producer:
        results = producer.delay_many(
            [(f"job-{i}".encode(), 0.2 + i * 0.01) for i in range(20)] + [(b"bad", -1)]
        )
    ids = results[:20]
    assert all(isinstance(i, str) for i in ids)
    assert isinstance(results[20], ValueError)
    assert hooks.before == 20 and hooks.after == [None] * 20
    rec = Recorder()
    with running(broker, rec, concurrency=2):
        assert wait_for(lambda: len(rec.seen) >= 20, timeout=30)
    assert sorted(m.id for m in rec.seen) == sorted(ids)  # type: ignore[type-var]
    for msg, at in zip(rec.seen, rec.times, strict=True):
        assert msg.not_before is not None and at >= msg.not_before
        assert msg.headers.get("traced") == "yes"
