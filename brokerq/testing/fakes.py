"""Producers that record what they were asked to send, for unit tests of code that pushes.

They follow the Producer / DelayProducer contracts exactly (the same arguments, the same
validation of delays and times, DuplicateJob for a reused ``job_id``) but keep every message
in ``sent`` instead of talking to a broker.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from brokerq.broker import DelayProducer, Producer
from brokerq.errors import DeliveryError, DuplicateJob
from brokerq.headers import with_options
from brokerq.message import new_id, to_bytes


@dataclass(frozen=True, slots=True)
class Sent:
    """One recorded message; ``due`` is the unix time it may run (None: at once)."""

    id: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    due: float | None = None
    priority: int | None = None


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.closed = False
        self._lock = threading.Lock()

    def _record(
        self,
        value: bytes | str,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        due: float | None,
        job_id: str | None,
        priority: int | None,
        time_limit: float | None,
        type: str | None,
    ) -> str:
        if self.closed:
            raise DeliveryError("producer is closed")
        merged = with_options(headers, time_limit=time_limit, type=type)
        with self._lock:
            if job_id is not None and any(s.id == job_id for s in self.sent):
                raise DuplicateJob(job_id, "pending")
            sent = Sent(
                id=job_id or new_id(),
                value=to_bytes(value),
                key=None if key is None else to_bytes(key),
                headers=dict(merged or {}),
                due=due,
                priority=priority,
            )
            self.sent.append(sent)
        return sent.id

    def values(self) -> list[bytes]:
        """The values sent so far, in order."""
        with self._lock:
            return [s.value for s in self.sent]

    def close(self) -> None:
        self.closed = True


class RecordingProducer(_Recorder, Producer):
    """A ``Producer`` that records pushes in ``sent``."""

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
        self._record(value, key, headers, None, job_id, priority, time_limit, type)


class RecordingDelayProducer(_Recorder, DelayProducer):
    """A ``DelayProducer`` that records jobs in ``sent``; ``revoke`` removes one."""

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
        return self._record(value, key, headers, due, job_id, priority, time_limit, type)

    def revoke(self, job_id: str) -> bool:
        with self._lock:
            kept = [s for s in self.sent if s.id != job_id]
            found = len(kept) != len(self.sent)
            self.sent = kept
            return found
