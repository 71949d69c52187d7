"""Looking a kq job up by id (``KafkaBroker.job``): only dead letters can be found.

Kafka keeps no per-job state: a record is an offset in a log, done once the group's commit
point passed it, and nothing says whether a given record is waiting, running or finished
without reading the whole partition. Dead letters are records of their own (the DLQ topic,
brokerq_kafka._dlqadmin), so a job that died can be found by its message id or its ref.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from brokerq.errors import NotSupported
from brokerq.records import JobInfo
from brokerq_kafka import _wire
from brokerq_kafka._dlqrefs import make_ref


def dead_job(records: Iterable[Any], job_id: str, topic: str) -> JobInfo:
    """The job ``job_id`` (a message id, or a dead letter's ref ``partition/offset``) among the
    open dead-letter ``records`` of ``topic``: state "dead", its attempt, last error, when it
    failed (unix seconds), the message; ``details``: ``ref``, ``origin`` (the main-topic
    record it was read from) and ``error_type``. The newest when it died more than once.

    NotSupported when it is not among them: kq cannot tell anything else about a job."""
    found = None
    for record in records:
        dead = _wire.decode_dead(record)
        ref = make_ref(record.partition(), record.offset())
        if dead.message.id == job_id or ref == job_id:
            found = (ref, dead)
    if found is None:
        raise NotSupported(
            f"kafka keeps no per-job state: only dead letters can be looked up, and "
            f"{job_id!r} is not among the dead letters of {topic!r}"
        )
    ref, dead = found
    return JobInfo(
        id=job_id,
        state="dead",
        attempt=dead.message.attempt,
        last_error=dead.error,
        finished_at=dead.failed_at,
        message=dead.message,
        details={
            "ref": ref,
            "origin": str(dead.origin) if dead.origin is not None else None,
            "error_type": dead.error_type,
        },
    )
