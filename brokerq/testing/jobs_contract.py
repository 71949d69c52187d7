"""The job-control contract (issue 15), written once and run against every backend:
caller-chosen ids (DuplicateJob while live, free after the job finished and ``unique_for``
passed, free at once after a revoke), ``Broker.job`` along a job's life, pause / resume.

A backend's test module subclasses ``JobsContract`` and gives it a ``broker`` fixture
returning a fresh, isolated Broker (as for brokerq.testing.contract). Each case runs what the
Broker's ``capabilities`` declare (``idempotent_push``, ``idempotent_delay``, ``job_lookup``,
``pause``) and otherwise checks that the operation raises NotSupported. Ids carry a random
part, so backends on shared servers can run the cases in parallel. Needs pytest.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from brokerq.broker import Broker
from brokerq.errors import DuplicateJob, NotSupported
from brokerq.message import Message
from brokerq.records import JOB_STATES
from brokerq.retry import RetryPolicy
from brokerq.testing.contract import Recorder, running, wait_for

__all__ = ["LIVE_STATES", "JobsContract", "new_job_id"]

LIVE_STATES = ("pending", "delayed", "running", "retrying")


def new_job_id(prefix: str = "order") -> str:
    """A caller-chosen id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _state(broker: Broker, job_id: str) -> str | None:
    info = broker.job(job_id)
    return None if info is None else info.state


def _enqueue(broker: Broker, value: bytes, delay: float, job_id: str | None = None) -> str:
    """Delay ``value`` (push it where the backend cannot delay); return the id to look up."""
    if broker.capabilities.delay:
        with broker.delay_producer() as producer:
            returned = producer.delay(value, delay, job_id=job_id)
        return job_id or returned
    assert job_id is not None, "a backend without delay needs a job_id to be looked up"
    with broker.producer() as producer:
        producer.push(value, job_id=job_id)
        producer.flush(30)
    return job_id


class JobsContract:
    """Idempotent enqueue, job status by id, pause / resume."""

    # -- idempotent enqueue ------------------------------------------------------------------
    def test_push_with_a_live_id_raises_duplicate_job(self, broker: Broker) -> None:
        job_id = new_job_id()
        with broker.producer() as producer:
            if not broker.capabilities.idempotent_push:
                with pytest.raises(NotSupported):
                    producer.push(b"x", job_id=job_id)
                return
            producer.push(b"first", job_id=job_id)
            with pytest.raises(DuplicateJob) as raised:
                producer.push(b"second", job_id=job_id)
            producer.flush(30)
        assert raised.value.job_id == job_id
        assert raised.value.state in LIVE_STATES
        rec = Recorder()
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) >= 1)
            time.sleep(0.5)
        assert rec.values() == [b"first"]

    def test_delay_id_reserved_while_live_and_for_unique_for_after(self, broker: Broker) -> None:
        if not broker.capabilities.delay:
            pytest.skip("the backend has no delayed jobs")
        job_id = new_job_id()
        if not broker.capabilities.idempotent_delay:
            with pytest.raises(NotSupported), broker.delay_producer() as producer:
                producer.delay(b"x", 1.0, job_id=job_id)
            return
        unique_for = 2.0
        with broker.delay_producer() as producer:
            producer.delay(b"once", 0.5, job_id=job_id, unique_for=unique_for)
            with pytest.raises(DuplicateJob) as raised:
                producer.delay(b"twice", 0.5, job_id=job_id, unique_for=unique_for)
            assert raised.value.state == "delayed"
        rec = Recorder()
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) == 1)
            finished = time.time()
            assert wait_for(lambda: not broker.capabilities.job_lookup or _done(broker, job_id))
            with pytest.raises(DuplicateJob), broker.delay_producer() as producer:
                producer.delay(b"too soon", 0.1, job_id=job_id, unique_for=unique_for)
            time.sleep(max(0.0, finished + unique_for + 0.2 - time.time()))
            with broker.delay_producer() as producer:
                producer.delay(b"again", 0.1, job_id=job_id)
            assert wait_for(lambda: len(rec.seen) == 2)
            time.sleep(0.5)
        assert rec.values() == [b"once", b"again"]

    def test_revoked_job_frees_its_id(self, broker: Broker) -> None:
        if not (broker.capabilities.delay and broker.capabilities.idempotent_delay):
            pytest.skip("the backend cannot delay with a caller-chosen id")
        job_id = new_job_id()
        with broker.delay_producer() as producer:
            producer.delay(b"cancel me", 30.0, job_id=job_id, unique_for=60)
            assert producer.revoke(job_id) is True
            producer.delay(b"kept", 30.0, job_id=job_id)
            with pytest.raises(DuplicateJob):
                producer.delay(b"third", 30.0, job_id=job_id)
            assert producer.revoke(job_id) is True

    # -- job status by id --------------------------------------------------------------------
    def test_job_states_along_a_failing_life(self, broker: Broker) -> None:
        """delayed -> running -> retrying -> running -> dead, with attempts and the error."""
        if not broker.capabilities.job_lookup:
            with pytest.raises(NotSupported):
                broker.job(new_job_id())
            return
        assert broker.job(new_job_id("never")) is None
        job_id = _enqueue(broker, b"doomed", 1.0, self._id_if_supported(broker))
        assert _state(broker, job_id) in ("delayed", "pending")
        seen = _Gate()
        policy = RetryPolicy(max_attempts=2, backoff=2.0, jitter=False)
        with running(
            broker, seen.handler(lambda m: RuntimeError(f"boom {m.attempt}")), retry=policy
        ):
            assert seen.started.wait(30), "never started"
            info = broker.job(job_id)
            assert info is not None and info.state == "running", info
            seen.go()
            assert wait_for(lambda: _state(broker, job_id) == "retrying", 10), broker.job(job_id)
            retrying = broker.job(job_id)
            assert retrying is not None
            assert retrying.last_error is not None and "boom 1" in retrying.last_error
            assert retrying.due is not None and retrying.due > time.time() - 0.5
            assert wait_for(lambda: _state(broker, job_id) == "dead", 30), broker.job(job_id)
        dead = broker.job(job_id)
        assert dead is not None and dead.attempt == 2, dead
        assert dead.last_error is not None and "boom 2" in dead.last_error
        assert dead.state in JOB_STATES

    def test_job_states_along_a_successful_life(self, broker: Broker) -> None:
        """delayed -> running -> done (remembered with its finish time)."""
        if not broker.capabilities.job_lookup:
            pytest.skip("the backend cannot look jobs up")
        job_id = _enqueue(broker, b"fine", 0.5, self._id_if_supported(broker))
        info = broker.job(job_id)
        assert info is not None and info.created_at is not None
        seen = _Gate()
        with running(broker, seen.handler(lambda m: None)):
            assert seen.started.wait(30)
            assert _state(broker, job_id) == "running"
            seen.go()
            assert wait_for(lambda: _done(broker, job_id), 30), broker.job(job_id)
        done = broker.job(job_id)
        assert done is not None and done.finished_at is not None
        assert done.finished_at >= (info.created_at or 0)

    @staticmethod
    def _id_if_supported(broker: Broker) -> str | None:
        caps = broker.capabilities
        usable = caps.idempotent_delay if caps.delay else caps.idempotent_push
        return new_job_id() if usable else None

    # -- pause / resume ----------------------------------------------------------------------
    def test_pause_stops_new_starts_and_resume_drains(self, broker: Broker) -> None:
        if not broker.capabilities.pause:
            with pytest.raises(NotSupported):
                broker.pause()
            assert broker.is_paused() is False
            return
        n = 40
        with broker.producer() as producer:
            for i in range(n):
                producer.push(b"%d" % i)
            producer.flush(30)
        rec = Recorder(fail=_slow)
        extra = 1 if broker.capabilities.delay else 0  # a delayed job that comes due paused
        try:
            with running(broker, rec, concurrency=2, paused=broker.is_paused) as worker:
                assert wait_for(lambda: len(rec.seen) >= 4)
                broker.pause()
                paused_at = time.time()
                assert broker.is_paused() is True
                if broker.capabilities.delay:
                    with broker.delay_producer() as producer:
                        producer.delay(b"due while paused", 0.2)
                assert wait_for(lambda: worker.paused, 5), "the worker never saw the pause"
                time.sleep(1.5)
                late = [t - paused_at for t in rec.times if t > paused_at + 1.0]
                assert late == [], f"jobs started {late} s after the pause"
                stopped_at = len(rec.seen)
                assert stopped_at < n, "every job ran before the pause took effect"
            # A worker started while the queue is paused starts nothing either.
            with running(broker, rec, paused=broker.is_paused):
                time.sleep(1.5)
                assert len(rec.seen) == stopped_at
                broker.resume()
                assert broker.is_paused() is False
                assert wait_for(lambda: len(rec.seen) >= n + extra, 60), len(rec.seen)
                time.sleep(0.3)
        finally:
            broker.resume()
        values = rec.values()
        assert len(values) == len(set(values)) == n + extra


def _slow(msg: Message) -> None:
    time.sleep(0.1)


def _done(broker: Broker, job_id: str) -> bool:
    info = broker.job(job_id)
    return info is not None and info.state == "done"


class _Gate:
    """A handler that signals when it starts and waits for ``go`` on its first message."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self._go = threading.Event()

    def go(self) -> None:
        self._go.set()

    def handler(self, fail: Callable[[Message], BaseException | None]) -> Callable[[Message], None]:
        def handle(msg: Message) -> None:
            self.started.set()
            self._go.wait(30)
            error = fail(msg)
            if error is not None:
                raise error

        return handle
