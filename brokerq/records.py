"""What brokers report about messages and workers: dead letters, one job's state, a live
worker, and what a backend can do. Plain frozen dataclasses, shared by every backend, the CLI,
metrics and the dashboard (re-exported by brokerq.broker)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from brokerq.message import Message


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that exhausted its retries, with the error that killed it.

    ``ref`` is the backend's reference (row id, node/job id, topic/partition/offset) used by
    ``retry_dead`` / ``purge_dead``; ``message.id`` is the id logs show.
    """

    message: Message
    error: str
    failed_at: float | None = None
    ref: str = ""
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do natively; the runtime and the contract suite adapt to it
    (huey's ``storage.blocking``)."""

    delay: bool = False  # delay / at
    priority: bool = False  # priority= on push / delay / at, kept across retries
    counts_redeliveries: bool = False  # a crashed worker's delivery comes back with attempt + 1
    idempotent_push: bool = False  # job_id= on push (DuplicateJob)
    idempotent_delay: bool = False  # job_id= on delay / at
    job_lookup: bool = False  # Broker.job(id)
    pause: bool = False  # Broker.pause() / resume()
    dead_letters: bool = True


#: States a job can be in, as Broker.job reports them.
JOB_STATES = ("pending", "delayed", "running", "retrying", "done", "dead", "revoked")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a broker knows of one job (``Broker.job``); times are unix seconds."""

    id: str
    state: str  # one of JOB_STATES
    attempt: int = 1
    last_error: str | None = None
    due: float | None = None
    created_at: float | None = None
    finished_at: float | None = None
    message: Message | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. dq copies per node, guard


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker process, as its heartbeat describes it; times are unix seconds."""

    name: str
    host: str
    pid: int
    concurrency: int
    started: float
    last_beat: float
    in_flight: int = 0
    queue: str = ""
    processed: int = 0  # messages handled since the worker started


def dead_job(letter: DeadLetter, details: Mapping[str, Any] | None = None) -> JobInfo:
    """A dead letter as ``Broker.job`` / ``Broker.jobs`` report it (state "dead")."""
    return JobInfo(
        id=letter.message.id,
        state="dead",
        attempt=letter.message.attempt,
        last_error=letter.error,
        created_at=letter.message.created_at,
        finished_at=letter.failed_at,
        message=letter.message,
        details=dict(details or {}),
    )
