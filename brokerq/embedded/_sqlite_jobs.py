"""Job control in the sqlite file: caller-chosen ids, one job's state, the pause flag and the
rate-limit windows (issue 15). The statements on the hot path (claim, ack) stay in
brokerq.embedded._sqlite_db; what is here runs per enqueue with a ``job_id``, per lookup, per
pause poll and per rate-limit hit.

A job's state comes from its row (so it is right after a worker restart):

    state 'ready', lease_until > now          running
    state 'ready', not_before > now           delayed (attempt 1) or retrying (attempt > 1)
    state 'ready', otherwise                  pending
    state 'dead'                              dead (a dead letter, kept until purged)
    state 'done' / 'revoked'                  done / revoked until not_before (forget time)

An id is reserved (brokerq.enqueue) while its job is live and ``unique_for`` seconds after it
finished (``failed_at`` holds when a done, dead or revoked job finished). Ids are unique per
sqlite file (the jobs table's primary key), across its queues.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from dataclasses import replace
from typing import Any

from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded._sqlite_source import _message
from brokerq.errors import BrokerError, DuplicateJob
from brokerq.ratelimit import Rate, RateLimiter
from brokerq.records import JobInfo

LIVE = ("pending", "delayed", "running", "retrying")

_STATE = "state, lease_until, not_before, attempt, failed_at, unique_for"
RESERVED = f"SELECT {_STATE} FROM jobs WHERE id = ?"
LOOKUP = f"SELECT {sql.COLUMNS}, {_STATE}, error FROM jobs WHERE id = ? AND queue = ?"
FORGET = "DELETE FROM jobs WHERE id = ?"
# A dead letter keeps its row under another id when its caller-chosen id is used again.
SET_ASIDE = "UPDATE jobs SET id = ? WHERE id = ?"
PAUSE = "INSERT OR IGNORE INTO paused (queue, since) VALUES (?, ?)"
RESUME = "DELETE FROM paused WHERE queue = ?"
IS_PAUSED = "SELECT 1 FROM paused WHERE queue = ?"
# One fixed window per key. A hit from a process whose clock read an older window counts in
# the current one; an update refused by its WHERE changes no row: over the limit.
HIT = (
    "INSERT INTO rate_windows (key, window, count) VALUES (:key, :window, 1)"
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN excluded.window > window THEN 1 ELSE count + 1 END,"
    " window = MAX(window, excluded.window)"
    " WHERE excluded.window > window OR count < :amount"
)


def state_of(
    state: str, lease_until: float | None, not_before: float, attempt: int, now: float
) -> str | None:
    """The JOB_STATES name of a row's state columns at unix time ``now``; None for a finished
    job past its forget time."""
    if state == "ready":
        if lease_until is not None and lease_until > now:
            return "running"
        if not_before > now:
            return "retrying" if attempt > 1 else "delayed"
        return "pending"
    if state in ("done", "revoked"):
        return state if not_before > now else None
    return state  # dead


def reserve(conn: sqlite3.Connection, job_id: str, now: float) -> None:
    """Free ``job_id`` for a new job inside the caller's write transaction, or raise
    DuplicateJob(job_id, state) while its job is live or within its ``unique_for``."""
    row = conn.execute(RESERVED, (job_id,)).fetchone()
    if row is None:
        return
    kind, lease_until, not_before, attempt, finished, unique_for = row
    current = state_of(kind, lease_until, not_before, attempt, now)
    if current in LIVE:
        raise DuplicateJob(job_id, current)
    if current in ("done", "dead") and (finished or 0.0) + (unique_for or 0.0) > now:
        raise DuplicateJob(job_id, current)
    if kind == "dead":  # keep the dead letter: it moves to ``<id>~<random>``
        conn.execute(SET_ASIDE, (f"{job_id}~{uuid.uuid4().hex[:12]}", job_id))
    else:
        conn.execute(FORGET, (job_id,))


def lookup(conn: sqlite3.Connection, queue: str, job_id: str, now: float) -> JobInfo | None:
    """``Broker.job`` on ``conn`` (read-only)."""
    row = conn.execute(LOOKUP, (job_id, queue)).fetchone()
    if row is None:
        return None
    kind, lease_until, not_before, attempt, finished, _unique, error = row[7:14]
    state = state_of(kind, lease_until, not_before, attempt, now)
    if state is None:
        return None
    message = _message(row)
    live = state in LIVE
    if not live:  # not_before of a finished row is its forget time
        message = replace(message, not_before=None)
    details: dict[str, Any] = {"queue": queue}
    if state == "running":
        details["lease_until"] = lease_until
    return JobInfo(
        id=job_id,
        state=state,
        attempt=int(attempt),
        last_error=error,
        due=float(not_before) if live else None,
        created_at=message.created_at,
        finished_at=None if live else finished,
        message=message,
        details=details,
    )


def paused(conn: sqlite3.Connection, queue: str) -> bool:
    """True while ``queue`` has a row in ``paused`` (a file without the table: False)."""
    try:
        return conn.execute(IS_PAUSED, (queue,)).fetchone() is not None
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return False  # written by an older brokerq, never paused
        raise


class SqliteRateLimiter(RateLimiter):
    """Fixed windows in the ``rate_windows`` table of the sqlite file, shared by every process
    using it: one short write transaction per hit (brokerq.ratelimit)."""

    def __init__(self, path: str) -> None:
        self._db = sql.Db(
            path, "normal"
        )  # a lost window after a power cut only lets a few more through

    def hit(self, key: str, rate: Rate) -> float:
        now = time.time()
        window = math.floor(now / rate.period) * rate.period
        args = {"key": key, "window": window, "amount": rate.amount}
        with self._db.use(f"rate limit {key}", BrokerError) as conn:
            counted = conn.execute(HIT, args).rowcount
        if counted:
            return 0.0
        return max(0.001, window + rate.period - now)

    def close(self) -> None:
        self._db.close()
