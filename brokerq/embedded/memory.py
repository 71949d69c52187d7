"""An in-process broker for tests and examples (dramatiq's ``StubBroker``).

All state lives on the ``MemoryBroker`` object, so its producers and sources share one queue
and nothing survives the process (the CLI refuses it for that reason). Waiting jobs sit in
the core ``Dispatcher`` (brokerq.dispatch): never handed out before their due time, lowest
``priority`` first (beanstalkd's rule, 0..2**32-1; the section's ``priority`` when a push
gives none), in push order among equals. A job keeps its priority through retries, releases
and dead-letter redrives. ``join()`` lets a test wait until every job, retries included, has
been handled.

Redeliveries are counted: a source closed with deliveries it never settled (its handlers
were abandoned at shutdown) gives them back with ``attempt + 1``, as an expired sqlite lease
does, so a handler that never finishes ends as a dead letter after ``max_attempts``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from brokerq.broker import (
    Broker,
    DeadLetter,
    Delivery,
    JobInfo,
    Source,
    WorkerInfo,
)
from brokerq.dispatch import Dispatcher
from brokerq.embedded import _listing
from brokerq.embedded._memory_jobs import JobBook
from brokerq.embedded._memory_jobs import MemoryJob as _Job
from brokerq.embedded._memory_producers import MemoryDelayProducer, MemoryProducer
from brokerq.embedded._workers import LiveWorkers
from brokerq.embedded.config import CAPABILITIES, EmbeddedConf, check_priority
from brokerq.errors import BrokerError
from brokerq.message import Message
from brokerq.outcome import Failure
from brokerq.ratelimit import LocalRateLimiter
from brokerq.schedule.store import FireStore

logger = logging.getLogger(__name__)


class MemoryBroker(Broker):
    """A thread-safe in-process queue with delays, priorities, retries, dead letters and
    ``join``."""

    name = "memory"
    section = "embedded"
    config_model = EmbeddedConf
    capabilities = CAPABILITIES
    in_process: ClassVar[bool] = True  # jobs live in this object: the CLI refuses it

    def __init__(self, config: EmbeddedConf | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = EmbeddedConf(backend="memory")
        elif not isinstance(config, EmbeddedConf):
            config = EmbeddedConf.model_validate({"backend": "memory", **config})
        self.config = config
        self.queue = config.queue
        self._dispatch: Dispatcher[_Job] = Dispatcher(
            capacity=2**62, priority_of=lambda job: job.priority
        )
        self._lock = threading.Condition()
        self._in_flight: dict[int, _Job] = {}
        self._dead: list[tuple[DeadLetter, int]] = []  # (letter, priority)
        self._outstanding = 0  # jobs not yet acked, dead-lettered or revoked
        self._tokens = itertools.count(1)
        self._closed = False
        self._live = LiveWorkers()
        self._book = JobBook(config.keep_done)  # jobs by id (brokerq.embedded._memory_jobs)
        self._paused = False

    # -- building blocks ---------------------------------------------------------------------
    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def delay_producer(self) -> MemoryDelayProducer:
        return MemoryDelayProducer(self)

    def source(self, prefetch: int | None = None) -> MemorySource:
        return MemorySource(self)

    def fire_store(self, namespace: str) -> FireStore:
        """Schedule fire records in this broker (brokerq.embedded.fires)."""
        from brokerq.embedded.fires import MemoryFireRecords, MemoryFireStore

        records = self.__dict__.setdefault("_fire_records", MemoryFireRecords())
        return MemoryFireStore(namespace, records, self._enqueue_messages)

    def rate_limiter(self) -> LocalRateLimiter:
        """Counts in this process: every worker of a memory broker lives in it."""
        limiter: LocalRateLimiter | None = self.__dict__.get("_limiter")
        if limiter is None:
            limiter = self.__dict__["_limiter"] = LocalRateLimiter()
        return limiter

    # -- job control -------------------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo | None:
        """What this broker knows of ``job_id`` (finished jobs for ``keep_done`` seconds)."""
        with self._lock:
            return self._book.lookup(job_id, time.time())

    def pause(self) -> None:
        """Set the flag every Worker of this broker polls (brokerq.worker)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def is_paused(self) -> bool:
        return self._paused

    def check(self) -> None:
        """Always healthy while open."""
        if self._closed:
            raise BrokerError("memory broker is closed")

    def close(self) -> None:
        """Wake every waiting receive; later pushes fail. Idempotent."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._dispatch.close()

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Keep ``info`` for ``ttl`` seconds (in this process only, like every memory job)."""
        self._live.beat(info, ttl)

    def workers(self) -> list[WorkerInfo]:
        return self._live.live()

    # -- inspection --------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        ready, delayed = self._dispatch.counts()
        with self._lock:
            return {
                "pending": ready,
                "delayed": delayed,
                "in_flight": len(self._in_flight),
                "dead": len(self._dead),
                "oldest_age_seconds": _listing.memory_oldest_age(self),
            }

    def jobs(self, state: str, limit: int = 50, offset: int = 0) -> list[JobInfo]:
        """Jobs by state, in hand-out order (brokerq.listing; brokerq.embedded._listing)."""
        return _listing.memory_jobs(self, state, limit, offset)

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first; ``refs`` are message ids (the ``ref`` shown)."""
        with self._lock:
            return [d for d, _ in self._dead if refs is None or d.ref in refs][: max(0, limit)]

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Requeue dead letters (``ref`` is the message id) at attempt 1, keeping their
        priority; return how many."""
        with self._lock:
            again = [e for e in self._dead if refs is None or e[0].ref in refs]
            self._dead = [e for e in self._dead if not (refs is None or e[0].ref in refs)]
            self._outstanding += len(again)
            jobs = [_Job(replace(d.message, attempt=1, not_before=None), p) for d, p in again]
            for job in jobs:
                self._book.drop(job.message.id)
                self._book.add(job)
        for job in jobs:
            self._dispatch.put(job)
        return len(again)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Delete dead letters (all when ``refs`` is None); return how many."""
        with self._lock:
            kept = [e for e in self._dead if refs is not None and e[0].ref not in refs]
            for letter, _ in self._dead:
                if refs is None or letter.ref in refs:
                    self._book.drop(letter.message.id)
            count = len(self._dead) - len(kept)
            self._dead = kept
            return count

    def join(self, timeout: float | None = 30.0) -> None:
        """Wait until no job is waiting (delayed ones and retries included) or in flight.

        Raises TimeoutError with the current counts when that does not happen in ``timeout``
        seconds (for example when no worker is running). Dead letters do not count: inspect
        ``dead_letters()`` afterwards.
        """
        with self._lock:
            idle = self._lock.wait_for(lambda: self._outstanding == 0, timeout)
        if not idle:
            raise TimeoutError(f"memory broker not idle after {timeout}s: {self.stats()}")

    # -- internals ---------------------------------------------------------------------------
    def _enqueue(self, jobs: list[tuple[_Job, float | None]], job_id: str | None = None) -> None:
        """Queue jobs (``job_id``: the one job's caller-chosen id, reserved first)."""
        with self._lock:
            if self._closed:
                raise BrokerError("memory broker is closed")
            if job_id is not None:
                self._book.reserve(job_id, time.time())
            for job, _ in jobs:
                self._book.add(job)
            self._outstanding += len(jobs)
        now = [job for job, due in jobs if due is None]
        if now:
            self._dispatch.put_many(now)  # one lock acquisition for a batch
        for job, due in jobs:
            if due is not None:
                self._dispatch.put(job, due)

    def _enqueue_messages(
        self, messages: Iterable[tuple[Message, float]], priority: int | None = None
    ) -> None:
        """Queue ``(message, due)`` pairs at ``priority`` (None: the section's; schedule
        fires)."""
        prio = check_priority(priority, self.config.priority)
        self._enqueue([(_Job(m, prio), due) for m, due in messages])

    def _finished(self, n: int = 1) -> None:
        """``n`` jobs left for good (acked, dead-lettered, revoked); lock held."""
        self._outstanding -= n
        if self._outstanding <= 0:
            self._lock.notify_all()

    def _revoke(self, job_id: str) -> bool:
        removed = self._dispatch.remove(lambda job: job.message.id == job_id)
        if removed:
            with self._lock:
                now = time.time()
                for job in removed:
                    self._book.finish(job, "revoked", now)
                self._finished(len(removed))
        return bool(removed)


class MemorySource(Source):
    """Receives from a ``MemoryBroker``. Closing it gives back whatever it has not settled,
    with ``attempt + 1`` (there is no lease to expire; see the module doc)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._mine: set[int] = set()
        self._closed = False

    def receive(self, timeout: float) -> Delivery[Any] | None:
        got = self.receive_many(1, timeout)
        return got[0] if got else None

    def receive_many(self, max_n: int, timeout: float) -> list[Delivery[Any]]:
        if self._closed:
            return []
        jobs = self._broker._dispatch.get_many(max_n, max(0.0, timeout))
        if not jobs:
            return []
        broker = self._broker
        with broker._lock:
            if self._closed:  # closed while we waited: give them back untouched
                for job in reversed(jobs):
                    broker._dispatch.put_front(job, holds_key=False)
                return []
            out: list[Delivery[Any]] = []
            for job in jobs:
                job.token = next(broker._tokens)
                broker._in_flight[job.token] = job
                self._mine.add(job.token)
                out.append(Delivery(job.message, job))
        return out

    def _take(self, delivery: Delivery[Any], action: str) -> _Job | None:
        """Remove a delivery from the in-flight set (lock held); None if already settled."""
        job: _Job = delivery.handle
        self._mine.discard(job.token)
        found = self._broker._in_flight.pop(job.token, None)
        if found is None:
            logger.warning("memory broker: %s of a delivery that was already settled", action)
        job.token = 0
        return found

    def ack(self, delivery: Delivery[Any]) -> None:
        with self._broker._lock:
            job = self._take(delivery, "ack")
            if job is not None:
                self._broker._book.finish(job, "done", time.time())
                self._broker._finished()

    def retry(self, delivery: Delivery[Any], delay: float, error: Failure) -> None:
        due = time.time() + max(0.0, delay)
        with self._broker._lock:
            job = self._take(delivery, "retry")
        if job is not None:
            job.message = replace(job.message, attempt=job.message.attempt + 1, not_before=due)
            job.error = str(error)
            self._broker._dispatch.put(job, due)

    def dead(self, delivery: Delivery[Any], error: Failure) -> None:
        failure = Failure.parse(error)
        with self._broker._lock:
            job = self._take(delivery, "dead")
            if job is not None:
                letter = DeadLetter(
                    job.message,
                    failure,
                    failed_at=time.time(),
                    ref=job.message.id,
                    traceback=failure.traceback,
                )
                self._broker._dead.append((letter, job.priority))
                self._broker._book.finish(job, "dead", letter.failed_at or 0.0, str(failure))
                self._broker._finished()

    def release(self, delivery: Delivery[Any]) -> None:
        with self._broker._lock:
            job = self._take(delivery, "release")
        if job is not None:
            self._broker._dispatch.put_front(job, holds_key=False)

    def close(self) -> None:
        """Give back every delivery of this source that was not settled, with ``attempt + 1``
        (a handler that never finished counts as an attempt). Idempotent."""
        with self._broker._lock:
            if self._closed:
                return
            self._closed = True
            jobs = [self._broker._in_flight.pop(t, None) for t in sorted(self._mine)]
            self._mine.clear()
        for job in jobs:
            if job is None:
                continue
            logger.warning(
                "memory source closed with message %s unsettled; requeued as attempt %d",
                job.message.id,
                job.message.attempt + 1,
            )
            job.token = 0
            job.message = replace(job.message, attempt=job.message.attempt + 1)
            self._broker._dispatch.put_front(job, holds_key=False)
