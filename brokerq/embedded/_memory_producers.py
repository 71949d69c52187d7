"""The producers of ``MemoryBroker`` (brokerq.embedded.memory): pushes and delayed jobs go
straight into the broker's dispatcher; a caller-chosen ``job_id`` is reserved in its JobBook
(brokerq.embedded._memory_jobs) under the broker's lock."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Protocol

from brokerq.broker import DelayProducer, Producer
from brokerq.embedded._memory_jobs import MemoryJob as _Job
from brokerq.embedded.config import EmbeddedConf, check_priority
from brokerq.enqueue import check_job_id, unique_seconds
from brokerq.headers import with_options
from brokerq.message import Message, to_bytes
from brokerq.middleware import MiddlewareChain


class MemoryBroker(Protocol):
    """What the producers need of their MemoryBroker (no import of it: no cycle)."""

    queue: str
    config: EmbeddedConf

    @property
    def middleware(self) -> MiddlewareChain: ...

    def _enqueue(
        self, jobs: list[tuple[_Job, float | None]], job_id: str | None = None
    ) -> None: ...

    def _revoke(self, job_id: str) -> bool: ...


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
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        if job_id is None and unique_for is None:
            headers = with_options(headers, time_limit=time_limit, type=type)
            self._broker.middleware.push(
                self._broker.queue,
                headers,
                lambda h: self.push_many([value], key=key, headers=h, priority=priority),
            )
            return
        MemoryDelayProducer(self._broker).schedule(
            value,
            0.0,
            key=key,
            headers=headers,
            job_id=check_job_id(job_id),
            unique_for=unique_for,
            priority=priority,
            time_limit=time_limit,
            type=type,
        )

    def push_many(
        self,
        values: Iterable[bytes | str],
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        priority: int | None = None,
    ) -> list[str]:
        """Push several values at once (same key, headers and priority); return their ids."""
        prio = check_priority(priority, self._broker.config.priority)
        k = None if key is None else to_bytes(key)
        h = dict(headers or {})
        now = time.time()
        messages = [Message(value=to_bytes(v), key=k, headers=h, created_at=now) for v in values]
        self._broker._enqueue([(_Job(m, prio), None) for m in messages])
        return [m.id for m in messages]

    def close(self) -> None:
        """Nothing to release."""


class MemoryDelayProducer(DelayProducer):
    """Schedules jobs in a ``MemoryBroker``; no limit on how far ahead (``max_delay`` None)."""

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
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """Queue a job due at unix time ``due`` (0.0: now, for a push with a job_id)."""
        job_id = check_job_id(job_id)
        unique = unique_seconds(unique_for, job_id)
        prio = check_priority(priority, self._broker.config.priority)
        headers = with_options(headers, time_limit=time_limit, type=type)

        def send(h: Mapping[str, str] | None) -> str:
            k = None if key is None else to_bytes(key)
            message = Message(
                value=to_bytes(value), key=k, headers=dict(h or {}), not_before=due or None
            )
            if job_id is not None:
                message = replace(message, id=job_id)
            job = _Job(message, prio, unique_for=unique if job_id is not None else None)
            self._broker._enqueue([(job, due or None)], job_id)
            return message.id

        return self._broker.middleware.push(self._broker.queue, headers, send)

    def revoke(self, job_id: str) -> bool:
        """Remove a job that is waiting (pending or delayed); False if none is."""
        return self._broker._revoke(job_id)

    def close(self) -> None:
        """Nothing to release."""
