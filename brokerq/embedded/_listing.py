"""Listing and ageing the jobs of the embedded brokers (``jobs()``, ``oldest_age_seconds``).

Kept apart from memory.py and sqlite.py: each broker has one delegating ``jobs`` method and
one ``stats`` key that call in here. Ages are seconds since the oldest job that may run now
became runnable (its due time for a delayed job or a retry, else its push time): how long the
queue's head has waited for a worker, 0 when nothing waits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from typing import Any, Protocol

from brokerq.dispatch import Dispatcher
from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded._sqlite_source import _message
from brokerq.listing import check_listing
from brokerq.message import Message
from brokerq.records import DeadLetter, JobInfo, dead_job

STATS_KEYS = ("pending", "delayed", "in_flight", "dead", "oldest_age_seconds")


class MemoryBroker(Protocol):
    """What is read here of brokerq.embedded.memory.MemoryBroker (no import: no cycle)."""

    _dispatch: Dispatcher[Any]
    _lock: threading.Condition
    _in_flight: dict[int, Any]
    _dead: list[tuple[DeadLetter, int]]


class SqliteBroker(Protocol):
    """What is read here of brokerq.embedded.sqlite.SqliteBroker."""

    queue: str
    _reader: sql.Db

    def _exists(self) -> bool: ...


# -- memory ------------------------------------------------------------------------------------


def _since(message: Message) -> float:
    return message.not_before or message.created_at


def memory_oldest_age(broker: MemoryBroker, now: float | None = None) -> int:
    """Whole seconds the oldest runnable job of a memory broker has waited (0: none)."""
    now = time.time() if now is None else now
    ready, delayed = broker._dispatch.snapshot()
    starts = [_since(j.message) for j in ready]
    starts += [due for due, _ in delayed if due <= now]
    return int(max(0.0, now - min(starts))) if starts else 0


def _info(message: Message, state: str, **kw: Any) -> JobInfo:
    if state == "delayed" and message.attempt > 1:
        state = "retrying"
    return JobInfo(
        id=message.id,
        state=state,
        attempt=message.attempt,
        due=message.not_before,
        created_at=message.created_at,
        message=message,
        **kw,
    )


def memory_jobs(broker: MemoryBroker, state: str, limit: int, offset: int) -> list[JobInfo]:
    """``Broker.jobs`` of a memory broker (brokerq.listing)."""
    limit, offset = check_listing(state, limit, offset)
    now = time.time()
    out: list[JobInfo]
    if state in ("pending", "delayed"):
        ready, delayed = broker._dispatch.snapshot()
        if state == "pending":
            out = [_info(j.message, "pending") for j in ready]
            out += [_info(j.message, "pending") for due, j in delayed if due <= now]
        else:
            out = [_info(replace_due(j.message, due), "delayed") for due, j in delayed if due > now]
    elif state == "running":
        with broker._lock:
            running = list(broker._in_flight.values())
        out = [_info(j.message, "running") for j in running]
    else:
        with broker._lock:
            letters = [d for d, _ in broker._dead]
        out = [dead_job(d) for d in letters]
    return out[offset : offset + limit]


def replace_due(message: Message, due: float) -> Message:
    """``message`` with ``not_before`` = ``due`` (the dispatcher's due time is the truth)."""
    if message.not_before == due:
        return message
    return replace(message, not_before=due)


# -- sqlite ------------------------------------------------------------------------------------

_FREE = "(lease_until IS NULL OR lease_until <= :now)"
OLDEST = (
    "SELECT MIN(not_before) FROM jobs WHERE queue = :queue AND state = 'ready'"
    f" AND {_FREE} AND not_before <= :now"
)
_SELECT = f"SELECT {sql.COLUMNS}, error, failed_at, lease_until FROM jobs WHERE queue = :queue"
LIST = {
    "pending": f"{_SELECT} AND state = 'ready' AND {_FREE} AND not_before <= :now"
    " ORDER BY priority, not_before, id",
    "delayed": f"{_SELECT} AND state = 'ready' AND {_FREE} AND not_before > :now"
    " ORDER BY not_before, id",
    "running": f"{_SELECT} AND state = 'ready' AND lease_until > :now ORDER BY lease_until, id",
    "dead": f"{_SELECT} AND state = 'dead' ORDER BY failed_at, id",
}


def sqlite_stats(broker: SqliteBroker) -> dict[str, int]:
    """``stats()`` of a sqlite queue: counts by state and ``oldest_age_seconds`` (read-only;
    all 0 while the file does not exist)."""
    if not broker._exists():
        return dict.fromkeys(STATS_KEYS, 0)
    now = time.time()
    with broker._reader.use("stats") as conn:
        row = conn.execute(sql.STATS, {"now": now, "queue": broker.queue}).fetchone()
        oldest = sqlite_oldest_age(conn, broker.queue, now)
    return {k: int(v or 0) for k, v in zip(STATS_KEYS, (*row, oldest), strict=True)}


def sqlite_oldest_age(conn: sqlite3.Connection, queue: str, now: float | None = None) -> int:
    """Whole seconds the oldest runnable job of ``queue`` has waited (0: none)."""
    now = time.time() if now is None else now
    (oldest,) = conn.execute(OLDEST, {"queue": queue, "now": now}).fetchone()
    return 0 if oldest is None else int(max(0.0, now - float(oldest)))


def sqlite_jobs(broker: SqliteBroker, state: str, limit: int, offset: int) -> list[JobInfo]:
    """``Broker.jobs`` of a sqlite queue (brokerq.listing; read-only)."""
    limit, offset = check_listing(state, limit, offset)
    if not broker._exists():
        return []
    params = {"queue": broker.queue, "now": time.time(), "limit": limit, "offset": offset}
    with broker._reader.use("jobs") as conn:
        rows = conn.execute(f"{LIST[state]} LIMIT :limit OFFSET :offset", params).fetchall()
    out = []
    for row in rows:
        message = _message(row[:7])
        error, failed_at, lease_until = row[7], row[8], row[9]
        out.append(
            JobInfo(
                id=message.id,
                state="retrying" if state == "delayed" and message.attempt > 1 else state,
                attempt=message.attempt,
                last_error=error,
                due=message.not_before,
                created_at=message.created_at,
                finished_at=failed_at,
                message=message,
                details={"lease until": lease_until} if lease_until and state == "running" else {},
            )
        )
    return out
