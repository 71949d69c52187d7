"""A durable broker in one sqlite file, shared safely by several worker processes.

Jobs are rows of one ``jobs`` table (WAL mode). A source claims a job atomically with one
``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …`` that stamps a lease (``lease_until``)
and an owner token; settling (ack, retry, dead, release) only touches a row whose owner is
still us. An ack keeps the row as 'done' for ``keep_done`` seconds (one UPDATE; a DELETE with
``keep_done: 0``), so ``job(id)`` can answer; sources purge old ones in small batches. While a handler runs, a heartbeat thread in the source renews the leases
it holds every third of ``visibility_timeout``, so only a job whose worker died (kill -9,
power cut) becomes claimable again, after the lease runs out, and that run counts as an
attempt. The heartbeat stops renewing a lease once the delivery's ``deadline`` (its time
limit plus grace, brokerq.timelimit) has passed: a handler stuck past it loses its job to
other workers within ``visibility_timeout``.

Jobs run lowest ``priority`` first (beanstalkd's rule, 0..2**32-1; the section's ``priority``
when a push gives none), then in due-time order; a job keeps its priority through retries,
releases and dead-letter redrives. Dead letters keep the failure's type and traceback.
Read-only operations (``stats``, ``dead_letters``, ``job``, ``is_paused``) open the file
read-only. Job control (caller-chosen ids, states, the pause flag, shared rate limits) is
described in brokerq.embedded._sqlite_jobs.

Durability: producers commit with ``synchronous=FULL`` by default, so a push has been
fsynced when it returns (survives a power cut; ~0.2 ms per push here, use ``push_many`` for
bulk). Sources commit claims and settlements with ``synchronous=NORMAL`` (survives a killed
process, not a power cut): losing one of those only makes a job run again, which at-least-once
delivery allows, and it keeps the worker loop free of an fsync per job. A FULL commit also
syncs every NORMAL commit before it, since both go through the same WAL.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from brokerq.broker import (
    Broker,
    DeadLetter,
    DelayProducer,
    JobInfo,
    Producer,
    WorkerInfo,
)
from brokerq.embedded import _listing, _sqlite_jobs, _workers
from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded._sqlite_source import SqliteSource, _failure, _message
from brokerq.embedded.config import CAPABILITIES, EmbeddedConf, check_priority
from brokerq.enqueue import check_job_id, unique_seconds
from brokerq.errors import ConfigError, ConnectionFailed, DeliveryError
from brokerq.headers import with_options
from brokerq.message import new_id, to_bytes
from brokerq.schedule.store import FireStore

logger = logging.getLogger(__name__)

_C = TypeVar("_C", "SqliteProducer", "SqliteDelayProducer", "SqliteSource")


class SqliteBroker(Broker):
    """Jobs in one sqlite file: durable across restarts, no server, several processes."""

    name = "sqlite"
    section = "embedded"
    section_default = True
    config_model = EmbeddedConf
    capabilities = CAPABILITIES

    def __init__(self, config: EmbeddedConf | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = EmbeddedConf()
        elif not isinstance(config, EmbeddedConf):
            config = EmbeddedConf.model_validate(config)
        if config.path == ":memory:" or config.path.startswith("file::memory:"):
            raise ConfigError(
                "embedded.path: an in-memory sqlite database cannot be shared; use backend: memory"
            )
        self.config = config
        self.path = config.path
        self.queue = config.queue
        self._admin = sql.Db(config.path, config.synchronous)
        self._reader = sql.Db(config.path, config.synchronous, readonly=True)
        self._wake = threading.Condition()
        self._generation = 0
        self._children: weakref.WeakSet[SqliteProducer | SqliteDelayProducer | SqliteSource] = (
            weakref.WeakSet()
        )

    # -- building blocks ---------------------------------------------------------------------
    def producer(self) -> SqliteProducer:
        return self._child(SqliteProducer(self))

    def delay_producer(self) -> SqliteDelayProducer:
        return self._child(SqliteDelayProducer(self))

    def source(self, prefetch: int | None = None) -> SqliteSource:
        return self._child(SqliteSource(self))

    def fire_store(self, namespace: str) -> FireStore:
        """Schedule fire records in this broker (brokerq.embedded.fires)."""
        from brokerq.embedded.fires import SqliteFireStore

        conf = self.config
        return SqliteFireStore(
            conf.path, conf.synchronous, conf.queue, namespace, self._notify, conf.priority
        )

    def _child(self, child: _C) -> _C:
        self._children.add(child)
        return child

    def check(self) -> None:
        """Open (or create) the file and read the jobs table; ConnectionFailed/ConfigError."""
        with self._admin.use("check", ConnectionFailed) as conn:
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()

    def close(self) -> None:
        """Close the admin connection and every producer and source made here. Idempotent."""
        for child in list(self._children):
            child.close()
        if "_limiter" in self.__dict__:
            self.__dict__["_limiter"].close()
        self._admin.close()
        self._reader.close()
        self._notify()

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Upsert this worker's row in the ``workers`` table, live for ``ttl`` seconds."""
        with self._admin.use("heartbeat") as conn:
            _workers.sqlite_beat(conn, self.queue, info, ttl)

    def workers(self) -> list[WorkerInfo]:
        """Workers of this queue whose heartbeat row has not expired."""
        with self._admin.use("workers") as conn:
            return _workers.sqlite_live(conn, self.queue)

    # -- wakeups inside one process ----------------------------------------------------------
    def _notify(self) -> None:
        """Wake this process's idle sources (a push, or a source closing)."""
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def _wait(self, generation: int, timeout: float) -> None:
        with self._wake:
            if self._generation == generation:
                self._wake.wait(timeout)

    # -- job control (brokerq.embedded._sqlite_jobs) ------------------------------------------
    def job(self, job_id: str) -> JobInfo | None:
        """The job's state from its row (read-only; None when no row of this queue has the
        id, or a finished job's ``keep_done`` has passed)."""
        if not self._exists():
            return None
        with self._reader.use(f"job {job_id}") as conn:
            return _sqlite_jobs.lookup(conn, self.queue, job_id, time.time())

    def pause(self) -> None:
        """Set the queue's row in the ``paused`` table: every worker process on the file stops
        starting jobs within its pause poll (brokerq.worker.PAUSE_POLL), also after restarts."""
        with self._admin.use("pause") as conn:
            conn.execute(_sqlite_jobs.PAUSE, (self.queue, time.time()))

    def resume(self) -> None:
        with self._admin.use("resume") as conn:
            conn.execute(_sqlite_jobs.RESUME, (self.queue,))

    def is_paused(self) -> bool:
        """Read-only: False while the file does not exist."""
        if not self._exists():
            return False
        with self._reader.use("pause flag") as conn:
            return _sqlite_jobs.paused(conn, self.queue)

    def rate_limiter(self) -> _sqlite_jobs.SqliteRateLimiter:
        """Fixed windows in the file, shared by every process on it (one per broker)."""
        limiter: _sqlite_jobs.SqliteRateLimiter | None = self.__dict__.get("_limiter")
        if limiter is None:
            limiter = self.__dict__["_limiter"] = _sqlite_jobs.SqliteRateLimiter(self.path)
        return limiter

    # -- inspection --------------------------------------------------------------------------
    def _exists(self) -> bool:
        """False while the file was never created (read-only operations then see an empty
        queue rather than create it); ConfigError for a missing directory."""
        if os.path.exists(self.path):
            return True
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise ConfigError(f"embedded.path {self.path!r}: directory {parent!r} does not exist")
        return False

    def stats(self) -> dict[str, int]:
        """Counts and oldest age of this queue (read-only: creates and changes nothing; all 0
        while the file does not exist; brokerq.embedded._listing)."""
        return _listing.sqlite_stats(self)

    def jobs(self, state: str, limit: int = 50, offset: int = 0) -> list[JobInfo]:
        """Jobs by state, in claim order (brokerq.listing; read-only)."""
        return _listing.sqlite_jobs(self, state, limit, offset)

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """Dead jobs, oldest failure first; ``refs`` are job ids (read-only)."""
        if not self._exists():
            return []
        with self._reader.use("dead letters") as conn:
            if refs is None:
                rows = conn.execute(sql.DEAD_LETTERS, (self.queue, limit)).fetchall()
            else:
                rows = [
                    r
                    for ref in dict.fromkeys(refs)
                    for r in conn.execute(sql.DEAD_LETTER_ONE, (self.queue, ref)).fetchall()
                ][:limit]
        return [
            DeadLetter(_message(r), _failure(r), failed_at=r[8], ref=r[0], traceback=r[10] or "")
            for r in rows
        ]

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Make dead jobs ready again with attempt 1; ``refs`` are job ids (all when None)."""
        with self._admin.transaction("retry dead") as conn:
            if refs is None:
                return conn.execute(sql.RETRY_DEAD_ALL, (self.queue,)).rowcount
            return sum(conn.execute(sql.RETRY_DEAD_ONE, (self.queue, r)).rowcount for r in refs)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Delete dead jobs; ``refs`` are job ids (all when None)."""
        with self._admin.transaction("purge dead") as conn:
            if refs is None:
                return conn.execute(sql.PURGE_DEAD, (self.queue,)).rowcount
            return sum(conn.execute(sql.PURGE_DEAD_ONE, (self.queue, r)).rowcount for r in refs)


def _row(
    value: bytes | str,
    queue: str,
    key: bytes | str | None,
    headers: Mapping[str, str] | None,
    due: float | None,
    priority: int,
    job_id: str | None = None,
) -> tuple[Any, ...]:
    now = time.time()
    return (
        job_id or new_id(),
        queue,
        to_bytes(value),
        None if key is None else to_bytes(key),
        json.dumps(dict(headers)) if headers else None,
        now,
        now if due is None else due,
        priority,
    )


class _Writer:
    """Inserts rows durably (one autocommit statement, or one transaction for a batch); a row
    with a caller-chosen id goes in only after ``reserve`` freed the id, in one transaction."""

    def __init__(self, broker: SqliteBroker) -> None:
        self._broker = broker
        self._db = sql.Db(broker.path, broker.config.synchronous)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        def failed(text: str) -> DeliveryError:
            return DeliveryError(text, failed=len(rows))

        if len(rows) == 1:
            with self._db.use("push", failed) as conn:
                conn.execute(sql.INSERT, rows[0])
        elif rows:
            with self._db.transaction("push", failed) as conn:
                conn.executemany(sql.INSERT, rows)
        self._broker._notify()

    def _send(self, row: tuple[Any, ...], job_id: str | None, unique_for: float) -> str:
        """Insert ``row`` (its id is ``job_id`` when given); DuplicateJob when that id is
        reserved. Return the job id."""
        if job_id is None:
            self._insert([row])
            return str(row[0])
        with self._db.transaction(f"push {job_id}", DeliveryError) as conn:
            _sqlite_jobs.reserve(conn, job_id, time.time())
            conn.execute(sql.INSERT_UNIQUE, (*row, unique_for if unique_for else None))
        self._broker._notify()
        return job_id

    def close(self) -> None:
        self._db.close()


class SqliteProducer(_Writer, Producer):
    """Each ``push`` is committed (fsynced with ``synchronous: full``) when it returns;
    ``job_id=`` makes it idempotent (DuplicateJob while that id is reserved)."""

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
        job_id = check_job_id(job_id)
        keep = unique_seconds(unique_for, job_id)
        prio = check_priority(priority, self._broker.config.priority)
        headers = with_options(headers, time_limit=time_limit, type=type)
        queue = self._broker.queue
        self._broker.middleware.push(
            queue,
            headers,
            lambda h: self._send(_row(value, queue, key, h, None, prio, job_id), job_id, keep),
        )

    def push_many(
        self,
        values: Iterable[bytes | str],
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        priority: int | None = None,
    ) -> list[str]:
        """Push several values in one transaction (one fsync); return their ids."""
        prio = check_priority(priority, self._broker.config.priority)
        rows = [_row(v, self._broker.queue, key, headers, None, prio) for v in values]
        self._insert(rows)
        return [r[0] for r in rows]


class SqliteDelayProducer(_Writer, DelayProducer):
    """Schedules jobs by their ``not_before`` time; ``revoke`` deletes one not yet running.

    No limit on how far ahead (``max_delay`` None): the due time is a REAL column, so any
    time a float holds is kept exactly as given (the CLI refuses times after the year 9999).
    """

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
        job_id = check_job_id(job_id)
        keep = unique_seconds(unique_for, job_id)
        prio = check_priority(priority, self._broker.config.priority)
        headers = with_options(headers, time_limit=time_limit, type=type)
        queue = self._broker.queue

        def send(h: Mapping[str, str] | None) -> str:
            return self._send(_row(value, queue, key, h, due, prio, job_id), job_id, keep)

        return self._broker.middleware.push(queue, headers, send)

    def revoke(self, job_id: str) -> bool:
        """Cancel a job that is waiting (not running); it is then reported as 'revoked' for
        ``keep_done`` seconds and its id is free at once."""
        now = time.time()
        args = {"id": job_id, "queue": self._broker.queue, "now": now}
        keep = self._broker.config.keep_done
        with self._db.use("revoke") as conn:
            if not keep:
                return conn.execute(sql.REVOKE, args).rowcount > 0
            return conn.execute(sql.REVOKE_KEEP, args | {"forget": now + keep}).rowcount > 0
