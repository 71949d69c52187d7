"""Job control of the memory broker: every job by id, caller-chosen ids, finished jobs
remembered for ``keep_done`` seconds (issue 15). The same rules as the sqlite file
(brokerq.embedded._sqlite_jobs), on the broker object: ``JobBook`` is used only under the
MemoryBroker's lock.

An id is reserved (brokerq.enqueue) while its job is live (waiting or handed out) and
``unique_for`` seconds after it finished (done or dead); a revoked job frees it at once.
Finished jobs are forgotten lazily, on the next enqueue or lookup after their time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

from brokerq.errors import DuplicateJob
from brokerq.message import Message
from brokerq.records import JobInfo

LIVE = ("pending", "delayed", "running", "retrying")


@dataclass(slots=True, eq=False)
class MemoryJob:
    """A message with its priority; ``token`` names its current delivery (0: waiting);
    ``unique_for`` is set for a caller-chosen id, ``error`` after a failed attempt."""

    message: Message
    priority: int
    token: int = 0
    unique_for: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Finished:
    state: str  # done, dead or revoked
    message: Message
    finished_at: float
    reserved_until: float  # the id is reserved until then
    error: str | None
    forget_at: float | None  # None: a dead letter, kept until purged or requeued


def live_state(job: MemoryJob, now: float) -> str:
    """running, delayed, retrying or pending."""
    if job.token:
        return "running"
    due = job.message.not_before
    if due is not None and due > now:
        return "retrying" if job.message.attempt > 1 else "delayed"
    return "pending"


class JobBook:
    """Live jobs by id and finished ones until they are forgotten (caller holds the lock)."""

    def __init__(self, keep_done: float) -> None:
        self.keep_done = keep_done
        self._live: dict[str, MemoryJob] = {}
        self._finished: dict[str, _Finished] = {}
        self._expiry: list[tuple[float, str]] = []  # (forget at, id); dead letters stay

    def reserve(self, job_id: str, now: float) -> None:
        """DuplicateJob(job_id, state) unless ``job_id`` is free for a new job."""
        self._forget(now)
        live = self._live.get(job_id)
        if live is not None:
            raise DuplicateJob(job_id, live_state(live, now))
        done = self._finished.get(job_id)
        if done is not None and done.state != "revoked" and done.reserved_until > now:
            raise DuplicateJob(job_id, done.state)

    def add(self, job: MemoryJob) -> None:
        self._finished.pop(job.message.id, None)
        self._live[job.message.id] = job

    def finish(self, job: MemoryJob, state: str, now: float, error: str | None = None) -> None:
        """``job`` left the queue as ``state`` (done, dead, revoked) at unix time ``now``."""
        job_id = job.message.id
        if self._live.get(job_id) is job:
            del self._live[job_id]
        unique = job.unique_for or 0.0
        keep = max(self.keep_done, unique)
        if state != "dead" and keep <= 0:
            self._finished.pop(job_id, None)
            return
        message = replace(job.message, not_before=None) if state == "done" else job.message
        reserved = now + (0.0 if state == "revoked" else unique)
        forget = None if state == "dead" else now + keep
        self._finished[job_id] = _Finished(
            state, message, now, reserved, error or job.error, forget
        )
        if forget is not None:
            heapq.heappush(self._expiry, (forget, job_id))

    def drop(self, job_id: str) -> None:
        """A dead letter was purged or requeued: forget its finished record."""
        found = self._finished.get(job_id)
        if found is not None and found.state == "dead":
            del self._finished[job_id]

    def lookup(self, job_id: str, now: float) -> JobInfo | None:
        self._forget(now)
        job = self._live.get(job_id)
        if job is not None:
            msg = job.message
            state = live_state(job, now)
            return JobInfo(
                id=job_id,
                state=state,
                attempt=msg.attempt,
                last_error=job.error,
                due=msg.not_before or msg.created_at,
                created_at=msg.created_at,
                message=msg,
            )
        done = self._finished.get(job_id)
        if done is None:
            return None
        return JobInfo(
            id=job_id,
            state=done.state,
            attempt=done.message.attempt,
            last_error=done.error,
            created_at=done.message.created_at,
            finished_at=done.finished_at,
            message=done.message,
        )

    def _forget(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            forget_at, job_id = heapq.heappop(self._expiry)
            found = self._finished.get(job_id)
            if found is not None and found.forget_at == forget_at:  # not a later record
                del self._finished[job_id]
