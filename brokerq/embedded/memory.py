"""An in-process broker for tests and examples (dramatiq's ``StubBroker``).

All state lives on the ``MemoryBroker`` object, so its producers and sources share one queue
and nothing survives the process. One ``Condition`` guards a heap of waiting jobs keyed on
``(not_before, seq)``: immediate pushes are due at once, delayed jobs and retries when their
time comes, and ``release`` puts a job back at its old place. ``join()`` lets a test wait
until every job, retries included, has been handled.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from brokerq.broker import (
    Broker,
    DeadLetter,
    DelayProducer,
    Delivery,
    Producer,
    Source,
    WorkerInfo,
    refuse_options,
)
from brokerq.embedded._workers import LiveWorkers
from brokerq.embedded.config import EmbeddedConf
from brokerq.errors import BrokerError
from brokerq.headers import with_options
from brokerq.message import Message, to_bytes
from brokerq.ratelimit import LocalRateLimiter
from brokerq.schedule.store import FireStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Handle:
    """Which delivery this is (``token``) and where the job sat in the heap (for release)."""

    token: int
    due: float
    seq: int


class MemoryBroker(Broker):
    """A thread-safe in-process queue with delays, retries, dead letters and ``join``."""

    name = "memory"
    section = "embedded"
    config_model = EmbeddedConf

    def __init__(self, config: EmbeddedConf | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = EmbeddedConf(backend="memory")
        elif not isinstance(config, EmbeddedConf):
            config = EmbeddedConf.model_validate(config)
        self.config = config
        self.queue = config.queue
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []  # (due, seq, id); stale entries skipped
        self._waiting: dict[str, tuple[Message, float, int]] = {}  # id -> (message, due, seq)
        self._in_flight: dict[int, Message] = {}
        self._dead: list[DeadLetter] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._closed = False
        self._live = LiveWorkers()

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
        return MemoryFireStore(namespace, records, self._enqueue)

    def rate_limiter(self) -> LocalRateLimiter:
        """Counts in this process: every worker of a memory broker lives in it."""
        limiter: LocalRateLimiter | None = self.__dict__.get("_limiter")
        if limiter is None:
            limiter = self.__dict__["_limiter"] = LocalRateLimiter()
        return limiter

    def check(self) -> None:
        """Always healthy while open."""
        if self._closed:
            raise BrokerError("memory broker is closed")

    def close(self) -> None:
        """Wake every waiting receive; later pushes fail. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Keep ``info`` for ``ttl`` seconds (in this process only, like every memory job)."""
        self._live.beat(info, ttl)

    def workers(self) -> list[WorkerInfo]:
        return self._live.live()

    # -- inspection --------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        now = time.time()
        with self._cond:
            delayed = sum(1 for _, due, _ in self._waiting.values() if due > now)
            return {
                "pending": len(self._waiting) - delayed,
                "delayed": delayed,
                "in_flight": len(self._in_flight),
                "dead": len(self._dead),
            }

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        with self._cond:
            return [d for d in self._dead if refs is None or d.ref in refs][:limit]

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Requeue dead letters (``ref`` is the message id) with a fresh attempt count."""
        wanted = None if refs is None else set(refs)
        with self._cond:
            again = [d for d in self._dead if wanted is None or d.ref in wanted]
            self._dead = [d for d in self._dead if not (wanted is None or d.ref in wanted)]
            now = time.time()
            for d in again:
                self._put(replace(d.message, attempt=1, not_before=None), now)
            return len(again)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        with self._cond:
            kept = [d for d in self._dead if refs is not None and d.ref not in refs]
            count = len(self._dead) - len(kept)
            self._dead = kept
            return count

    def join(self, timeout: float | None = 30.0) -> None:
        """Wait until no job is waiting (delayed ones and retries included) or in flight.

        Raises TimeoutError with the current counts when that does not happen in ``timeout``
        seconds (for example when no worker is running). Dead letters do not count: inspect
        ``dead_letters()`` afterwards.
        """
        with self._cond:
            idle = self._cond.wait_for(lambda: not self._waiting and not self._in_flight, timeout)
        if not idle:
            raise TimeoutError(f"memory broker not idle after {timeout}s: {self.stats()}")

    # -- internals (called with or without the lock, as marked) ------------------------------
    def _put(self, message: Message, due: float, seq: int | None = None) -> None:
        """Queue ``message`` (lock held)."""
        if seq is None:
            seq = next(self._seq)
        self._waiting[message.id] = (message, due, seq)
        heapq.heappush(self._heap, (due, seq, message.id))
        self._cond.notify_all()

    def _enqueue(self, messages: Iterable[tuple[Message, float]]) -> None:
        with self._cond:
            if self._closed:
                raise BrokerError("memory broker is closed")
            for message, due in messages:
                self._put(message, due)

    def _take(self, timeout: float, source: MemorySource) -> tuple[Message, _Handle] | None:
        """Wait up to ``timeout`` for a due job and record it as in flight at ``source``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._closed or source._closed):
                wait = deadline - time.monotonic()
                while self._heap:
                    due, seq, job_id = self._heap[0]
                    entry = self._waiting.get(job_id)
                    if entry is None or entry[2] != seq:
                        heapq.heappop(self._heap)  # revoked or requeued since
                        continue
                    lag = due - time.time()
                    if lag <= 0:
                        heapq.heappop(self._heap)
                        del self._waiting[job_id]
                        token = next(self._tokens)
                        self._in_flight[token] = entry[0]
                        source._mine.add(token)
                        return entry[0], _Handle(token, due, seq)
                    wait = min(wait, lag)
                    break
                if wait <= 0:
                    return None
                self._cond.wait(wait)
        return None

    def _settle(self, handle: _Handle, action: str) -> Message | None:
        """Remove a delivery from the in-flight set (lock held); None if already settled."""
        message = self._in_flight.pop(handle.token, None)
        if message is None:
            logger.warning("memory broker: %s of a delivery that was already settled", action)
        self._cond.notify_all()
        return message

    def _revoke(self, job_id: str) -> bool:
        with self._cond:
            found = self._waiting.pop(job_id, None) is not None
            self._cond.notify_all()
            return found


class MemoryProducer(Producer):
    """Pushes into a ``MemoryBroker``; every push is visible to its sources at once."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        refuse_options(self._broker.name, job_id=job_id, priority=priority)
        headers = with_options(headers, time_limit=time_limit, type=type)
        self._broker.middleware.push(
            self._broker.queue, headers, lambda h: self.push_many([value], key=key, headers=h)
        )

    def push_many(
        self,
        values: Iterable[bytes | str],
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Push several values at once (same key and headers); return their ids."""
        k = None if key is None else to_bytes(key)
        h = dict(headers or {})
        now = time.time()
        messages = [Message(value=to_bytes(v), key=k, headers=h, created_at=now) for v in values]
        self._broker._enqueue((m, now) for m in messages)
        return [m.id for m in messages]

    def close(self) -> None:
        """Nothing to release."""


class MemoryDelayProducer(DelayProducer):
    """Schedules jobs in a ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        refuse_options(self._broker.name, job_id=job_id, priority=priority)
        headers = with_options(headers, time_limit=time_limit, type=type)

        def send(h: Mapping[str, str] | None) -> str:
            k = None if key is None else to_bytes(key)
            message = Message(value=to_bytes(value), key=k, headers=dict(h or {}), not_before=due)
            self._broker._enqueue([(message, due)])
            return message.id

        return self._broker.middleware.push(self._broker.queue, headers, send)

    def revoke(self, job_id: str) -> bool:
        return self._broker._revoke(job_id)

    def close(self) -> None:
        """Nothing to release."""


class MemorySource(Source):
    """Receives from a ``MemoryBroker``. Closing it gives back whatever it has not settled,
    since there is no lease to expire (like a beanstalkd connection that goes away)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._mine: set[int] = set()
        self._closed = False

    def receive(self, timeout: float) -> Delivery[Any] | None:
        if self._closed:
            return None
        taken = self._broker._take(max(0.0, timeout), self)
        return None if taken is None else Delivery(taken[0], taken[1])

    def _done(self, delivery: Delivery[Any], action: str) -> tuple[Message, _Handle] | None:
        handle: _Handle = delivery.handle
        self._mine.discard(handle.token)
        message = self._broker._settle(handle, action)
        return None if message is None else (message, handle)

    def ack(self, delivery: Delivery[Any]) -> None:
        with self._broker._cond:
            self._done(delivery, "ack")

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        now = time.time()
        due = now + max(0.0, delay)
        with self._broker._cond:
            done = self._done(delivery, "retry")
            if done is not None:
                self._broker._put(
                    replace(done[0], attempt=done[0].attempt + 1, not_before=due), due
                )

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        with self._broker._cond:
            done = self._done(delivery, "dead")
            if done is not None:
                letter = DeadLetter(
                    done[0],
                    error,
                    failed_at=time.time(),
                    ref=done[0].id,
                    traceback=getattr(error, "traceback", ""),
                )
                self._broker._dead.append(letter)

    def release(self, delivery: Delivery[Any]) -> None:
        with self._broker._cond:
            done = self._done(delivery, "release")
            if done is not None:
                self._broker._put(done[0], done[1].due, done[1].seq)

    def close(self) -> None:
        """Put back every delivery of this source that was not settled. Idempotent."""
        with self._broker._cond:
            if self._closed:
                return
            self._closed = True
            for token in sorted(self._mine):
                message = self._broker._in_flight.pop(token, None)
                if message is not None:
                    logger.warning(
                        "memory source closed with message %s unsettled; requeued", message.id
                    )
                    self._broker._put(message, message.not_before or message.created_at)
            self._mine.clear()
            self._broker._cond.notify_all()
