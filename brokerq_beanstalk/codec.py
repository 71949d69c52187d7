"""Job bodies on the wire: the brokerq envelope, or go-queue's ``<unix-nanos>/<payload>``.

Consumers accept both. A go-queue body has no id, so (like go-queue) its id is the md5 of the
whole wrapped body: two go-queue jobs with the same payload *and* the same nanosecond collapse,
which go-queue's own producer cannot tell apart either.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping

from brokerq.errors import DecodeError
from brokerq.message import Message, is_packed, new_id, pack, to_bytes, unpack

_GOQUEUE = re.compile(rb"^(\d{1,20})/")

PRIORITY = "brokerq-priority"  # header: the job's own beanstalkd priority, kept across retries
GEN = "brokerq-job-gen"  # header: the generation of a job with a caller-chosen id (unique.py)
HOLD = 1.0  # seconds before its time a job is made ready (the consumer holds it until due)
MAX_DELAY = float(2**32 - 1)  # beanstalkd delays are unsigned 32-bit seconds


def beanstalk_delay(seconds: float, goqueue: bool = False) -> int:
    """Whole seconds to give beanstalkd for a job due in ``seconds`` (never above its limit).

    brokerq bodies carry their exact due time, so the copy is made ready up to ``HOLD``
    early and the consumer holds it; go-queue bodies are rounded up (never early).
    """
    whole = math.ceil(seconds) if goqueue else math.floor(seconds - HOLD)
    return int(min(MAX_DELAY, max(0, whole)))


def priority_of(msg: Message, default: int) -> int:
    """The job's own priority (its ``brokerq-priority`` header), else ``default``."""
    raw = msg.headers.get(PRIORITY)
    if raw is not None:
        try:
            value = int(raw)
        except ValueError:
            return default
        if 0 <= value <= 2**32 - 1:
            return value
    return default


def encode(
    value: bytes | str,
    not_before: float | None,
    *,
    key: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    goqueue: bool = False,
    job_id: str | None = None,
) -> tuple[str, bytes]:
    """Build ``(id, body)`` for a job due at ``not_before`` (unix seconds, None = now);
    the id is ``job_id`` when given, else a new one.

    go-queue bodies carry neither key nor headers (so neither a priority nor a time limit).
    """
    data = to_bytes(value)
    if goqueue:
        due = not_before if not_before is not None else time.time()
        body = b"%d/%s" % (int(due * 1e9), data)
        return goqueue_id(body), body
    msg = Message(
        value=data,
        key=to_bytes(key) if key is not None else None,
        headers=dict(headers or {}),
        id=job_id or new_id(),
        not_before=not_before,
    )
    return msg.id, pack(msg)


def goqueue_id(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def decode(body: bytes) -> Message:
    """Parse either format; raise DecodeError when it is neither."""
    if is_packed(body):
        return unpack(body)
    m = _GOQUEUE.match(body)
    if m is None:
        raise DecodeError("neither a brokerq envelope nor a go-queue body (<unix-nanos>/<payload>)")
    due = int(m.group(1)) / 1e9
    return Message(
        value=body[m.end() :], id=goqueue_id(body), created_at=due, not_before=due, attempt=1
    )
