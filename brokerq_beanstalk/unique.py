"""Caller-chosen job ids on dq: one reservation per id in Redis, taken before any replica.

``delay(..., job_id="order-42")`` (brokerq.enqueue states the rules) reserves the id with
one EVAL on keys of the id's hash tag only (``<prefix>{order-42}:unique`` and the guard's
keys of that job, brokerq_beanstalk.guard), so it works on Redis Cluster and proxies. The
reservation is taken **before** the copies are written to beanstalkd; when fewer than
``min_written`` copies were written the producer drops it again (``unreserve``), so a failed
enqueue never blocks its id. While the job is live the reservation stands (DuplicateJob names
the state); when the job ends (done or dead, ``Guard.mark_done_many`` / ``record_dead``) it
is kept ``unique_for`` more seconds; a revoke drops it at once.

Generations: an id can be used again, and copies of its earlier job may still sit on the
nodes (a replica the consumers look at ``claim_ttl`` seconds later, a node that was down).
Each enqueue gets a fresh generation, carried by the job (header ``brokerq-job-gen``) and
recorded in the reservation; a consumer that reserves a copy whose generation is not the
reserved one deletes it unrun (``Guard.acquire_many`` answers ``stale``).

``reserve`` and ``unreserve`` act on one job each, so batch producers call them per job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from brokerq.errors import DuplicateJob
from brokerq.message import new_id
from brokerq_beanstalk.codec import GEN
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.lua import _RESERVE, _UNRESERVE

__all__ = ["GEN", "Reservation", "new_generation", "parse_reservation", "reserve", "unreserve"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation's record: generation, unix created and due times (seconds), and the
    seconds the id stays reserved after its job ended."""

    gen: str
    created: float
    due: float
    unique_for: float


def new_generation() -> str:
    return new_id()


def parse_reservation(raw: bytes | str) -> Reservation | None:
    """The record ``"<gen> <created> <due> <unique_for ms>"``; None when malformed."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    parts = text.split(" ")
    if len(parts) != 4:
        return None
    try:
        return Reservation(parts[0], float(parts[1]), float(parts[2]), int(parts[3]) / 1000)
    except ValueError:
        return None


def _state(code: str, record: bytes | None, now: float) -> str:
    """The JOB_STATES name of what the reservation script answered."""
    if code != "queued":
        return code  # done, dead, running, retrying
    info = parse_reservation(record or b"")
    return "delayed" if info is not None and info.due > now else "pending"


def reserve(guard: Guard, job_id: str, gen: str, due: float | None, unique_for: float) -> None:
    """Reserve ``job_id`` for the job of generation ``gen`` due at unix time ``due`` (None:
    now), to stay reserved ``unique_for`` seconds after it ended.

    Raises DuplicateJob(job_id, state) while the id is taken (state: pending, delayed,
    running, retrying, or done / dead within ``unique_for``), ConnectionFailed when Redis
    does not answer (nothing is written then). The reservation itself expires ``done_ttl``
    seconds after the due time, like the guard's other records of the job.
    """
    now = time.time()
    when = now if due is None else due
    record = f"{gen} {now!r} {when!r} {int(unique_for * 1000)}"
    ttl = guard.done_ms + max(0, int((when - now) * 1000))
    k = guard.key
    keys = [k(job_id, x) for x in ("unique", "done", "retry", "claims", "dead", "copies", "fin")]
    answer = guard.eval("reserve", _RESERVE, [*keys, k(job_id, "claim")], [record, ttl])
    if int(answer[0]) == 1:
        return
    code = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
    raise DuplicateJob(job_id, _state(code, answer[2], now))


def unreserve(guard: Guard, job_id: str, gen: str) -> None:
    """Drop ``job_id``'s reservation if it is still generation ``gen``'s (the enqueue
    failed). ConnectionFailed when Redis does not answer."""
    guard.eval("unreserve", _UNRESERVE, [guard.key(job_id, "unique")], [gen])
