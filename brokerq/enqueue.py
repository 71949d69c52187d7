"""Rules every enqueue follows, whatever the backend: caller-chosen job ids, how long an id
stays reserved, options a backend cannot honour, and how far ahead a job may be due.

Idempotent enqueue (``job_id=``) follows the unique-job semantics users of rq, asynq and
dramatiq ask for, without asynq's surprise (asynq #369/#886: a TTL that expires while the
job still waits). Here an id is reserved **while the job is live** (pending, delayed,
running, retrying), whatever that takes, and ``unique_for`` seconds longer after it
finished (done or dead). A revoked job frees its id at once.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

from brokerq.errors import NotSupported

#: Longest caller-chosen job id, in characters.
MAX_JOB_ID = 128
#: Longest ``unique_for``, in seconds (10 years: stores keep it as integer milliseconds).
MAX_UNIQUE_FOR = 10 * 365 * 86400.0


def check_job_id(job_id: str | None) -> str | None:
    """``job_id`` unchanged, or ValueError when it is empty, longer than 128 characters or
    holds a character that is not printable ASCII other than space (it travels in headers,
    Redis keys and beanstalkd job bodies)."""
    if job_id is None:
        return None
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a str, not {type(job_id).__name__}")
    if not job_id or len(job_id) > MAX_JOB_ID:
        raise ValueError(f"job_id must be 1 to {MAX_JOB_ID} characters, got {len(job_id)}")
    if not all("!" <= ch <= "~" for ch in job_id):
        raise ValueError(f"job_id {job_id!r} may hold only printable ASCII without spaces")
    return job_id


def unique_seconds(unique_for: float | timedelta | None, job_id: str | None) -> float:
    """Seconds an id stays reserved after its job finished (0.0 when not given);
    ValueError when negative or given without a ``job_id``."""
    if unique_for is None:
        return 0.0
    if job_id is None:
        raise ValueError("unique_for needs a job_id: it keeps that id reserved")
    seconds = unique_for.total_seconds() if isinstance(unique_for, timedelta) else unique_for
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"unique_for must be seconds or a timedelta, got {unique_for!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_UNIQUE_FOR:
        raise ValueError(
            f"unique_for must be 0 to {MAX_UNIQUE_FOR:.0f} seconds (10 years), got {unique_for!r}"
        )
    return float(seconds)


def refuse_options(
    broker: str,
    *,
    job_id: str | None = None,
    priority: int | None = None,
    unique_for: float | timedelta | None = None,
) -> None:
    """NotSupported when a push asks for what ``broker`` cannot do (a caller-chosen id, a
    priority): silently ignoring either would break the caller's assumption."""
    if job_id is not None or unique_for is not None:
        raise NotSupported(f"the {broker} broker cannot enqueue with a caller-chosen job_id")
    if priority is not None:
        raise NotSupported(f"the {broker} broker has no priorities")


def check_max_delay(due: float, max_delay: float | None, what: str) -> float:
    """``due`` unchanged, or ValueError when it lies more than ``max_delay`` seconds ahead."""
    if max_delay is not None:
        ahead = due - time.time()
        if ahead > max_delay:
            raise ValueError(
                f"{what}: due time {ahead:.0f}s ahead is beyond the {max_delay:.0f}s "
                "this broker can hold"
            )
    return due
