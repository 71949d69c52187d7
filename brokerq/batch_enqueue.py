"""Many delayed jobs in one call: ``DelayProducer.delay_many`` / ``at_many`` (issue 16).

A job is a ``DelayedJob`` (a value, exactly one of ``delay`` or ``when``, and the options
``delay`` / ``at`` take) or a plain pair: ``(value, delay)`` for ``delay_many``,
``(value, when)`` for ``at_many``. Every job is validated once, here, by the rules ``delay`` and
``at`` follow (brokerq.timing: no negative delay, no past time; brokerq.enqueue: the job_id
check and the backend's ``max_delay``); the valid ones reach the backend's ``schedule_many``
in one call, as ``ScheduledJob`` with a unix due time.

The result has one entry per job, in the order given: the job's id (what ``delay`` returns,
for ``revoke``), or the exception that job raised (ValueError, TypeError, DuplicateJob,
DeliveryError, ...). One bad or failed job never fails the others; nothing is raised for a
job. ``schedule_each`` is the default ``schedule_many``: ``schedule`` once per job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from brokerq.enqueue import check_job_id, check_max_delay
from brokerq.timing import due_after, due_at


class Schedules(Protocol):
    """What this module needs of a ``brokerq.broker.DelayProducer`` (a Protocol, so the
    contract module can import this one without a cycle)."""

    @property
    def max_delay(self) -> float | None: ...

    def schedule_many(self, jobs: Sequence[ScheduledJob]) -> list[EnqueueResult]: ...

    @property
    def schedule(self) -> Callable[..., str]: ...


__all__ = ["DelayedJob", "EnqueueResult", "ScheduledJob", "enqueue_many", "schedule_each"]

#: One job's outcome: its id, or the exception it raised.
EnqueueResult = str | Exception


@dataclass(frozen=True, slots=True)
class DelayedJob:
    """One job for ``delay_many`` / ``at_many``: ``value`` run ``delay`` seconds (or a
    timedelta) from now, or at ``when`` (an aware datetime, or naive local time): exactly one
    of the two. The other fields mean what they mean on ``Producer.push``."""

    value: bytes | str
    delay: float | timedelta | None = None
    when: datetime | None = None
    key: bytes | str | None = None
    headers: Mapping[str, str] | None = None
    job_id: str | None = None
    unique_for: float | timedelta | None = None
    priority: int | None = None
    time_limit: float | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A validated job as ``schedule_many`` takes it: ``due`` is unix seconds."""

    value: bytes | str
    due: float
    key: bytes | str | None = None
    headers: Mapping[str, str] | None = None
    job_id: str | None = None
    unique_for: float | timedelta | None = None
    priority: int | None = None
    time_limit: float | None = None
    type: str | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``DelayProducer.schedule`` for this job."""
        return {
            "key": self.key,
            "headers": self.headers,
            "job_id": self.job_id,
            "unique_for": self.unique_for,
            "priority": self.priority,
            "time_limit": self.time_limit,
            "type": self.type,
        }


def scheduled(item: object, at: bool, max_delay: float | None, what: str) -> ScheduledJob:
    """Validate one job of ``delay_many`` (``at`` False) or ``at_many`` (True).

    TypeError for something that is neither a DelayedJob nor a pair; ValueError for a job
    with both or neither of delay / when, a bad time or a bad job_id (brokerq.enqueue)."""
    if isinstance(item, DelayedJob):
        if item.delay is not None and item.when is None:
            due = due_after(item.delay)
        elif item.when is not None and item.delay is None:
            due = due_at(item.when)
        else:
            raise ValueError("a DelayedJob needs exactly one of delay= or when=")
        return ScheduledJob(
            item.value,
            check_max_delay(due, max_delay, what),
            item.key,
            item.headers,
            check_job_id(item.job_id),
            item.unique_for,
            item.priority,
            item.time_limit,
            item.type,
        )
    if not isinstance(item, tuple) or len(item) != 2:
        shape = "(value, when)" if at else "(value, delay)"
        raise TypeError(f"a job is a DelayedJob or a pair {shape}, not {type(item).__name__}")
    value, when = item
    if not isinstance(value, bytes | str):
        raise TypeError(f"a job's value must be bytes or str, not {type(value).__name__}")
    due = due_at(when) if at else due_after(when)
    return ScheduledJob(value, check_max_delay(due, max_delay, what))


def enqueue_many(producer: Schedules, jobs: Iterable[object], at: bool) -> list[EnqueueResult]:
    """Validate ``jobs`` and hand the valid ones to ``producer.schedule_many`` in one call;
    one result per job, in order (see the module docstring)."""
    what = type(producer).__name__
    results: list[EnqueueResult | None] = []
    valid: list[ScheduledJob] = []
    slots: list[int] = []
    for item in jobs:
        try:
            job = scheduled(item, at, producer.max_delay, what)
        except (TypeError, ValueError) as e:
            results.append(e)
            continue
        slots.append(len(results))
        results.append(None)
        valid.append(job)
    if valid:
        done = producer.schedule_many(valid)
        if len(done) != len(valid):
            raise RuntimeError(
                f"{what}.schedule_many returned {len(done)} results for {len(valid)}"
            )
        for slot, result in zip(slots, done, strict=True):
            results[slot] = result
    return [r if r is not None else RuntimeError("no result") for r in results]


def schedule_each(producer: Schedules, jobs: Sequence[ScheduledJob]) -> list[EnqueueResult]:
    """The default ``schedule_many``: ``schedule`` each job in turn, keeping its id or error."""
    out: list[EnqueueResult] = []
    for job in jobs:
        try:
            out.append(producer.schedule(job.value, job.due, **job.options()))
        except Exception as e:  # the job's own failure: reported in its slot, the rest go on
            out.append(e)
    return out
