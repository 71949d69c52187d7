"""A durable broker in one sqlite file, shared safely by several worker processes.

Jobs are rows of one ``jobs`` table (WAL mode). A source claims a job atomically with one
``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …`` that stamps a lease (``lease_until``)
and an owner token; settling (ack = delete, retry, dead, release) only touches a row whose
owner is still us. While a handler runs, a heartbeat thread in the source renews the leases
it holds every third of ``visibility_timeout``, so only a job whose worker died (kill -9,
power cut) becomes claimable again, after the lease runs out, and that run counts as an
attempt.

Durability: producers commit with ``synchronous=FULL`` by default, so a push has been
fsynced when it returns (survives a power cut; ~0.2 ms per push here, use ``push_many`` for
bulk). Sources commit claims and settlements with ``synchronous=NORMAL`` (survives a killed
process, not a power cut): losing one of those only makes a job run again, which at-least-once
delivery allows, and it keeps the worker loop free of an fsync per job. A FULL commit also
syncs every NORMAL commit before it, since both go through the same WAL.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from brokerq.broker import (
    Broker,
    DeadLetter,
    DelayProducer,
    Delivery,
    Producer,
    Source,
    WorkerInfo,
    refuse_options,
)
from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded import _workers
from brokerq.embedded.config import EmbeddedConf
from brokerq.errors import BrokerError, ConfigError, ConnectionFailed, DeliveryError
from brokerq.headers import with_options
from brokerq.message import Message, new_id, to_bytes
from brokerq.schedule.store import FireStore

logger = logging.getLogger(__name__)

_C = TypeVar("_C", "SqliteProducer", "SqliteDelayProducer", "SqliteSource")


@dataclass(frozen=True, slots=True)
class _Lease:
    """A delivery's handle: the job id and the owner token written when it was claimed."""

    id: str
    owner: str


def _message(row: tuple[Any, ...]) -> Message:
    job_id, value, key, headers, attempt, created_at, not_before = row[:7]
    return Message(
        value=bytes(value),
        key=None if key is None else bytes(key),
        headers=json.loads(headers) if headers else {},
        id=job_id,
        attempt=int(attempt),
        created_at=float(created_at),
        not_before=float(not_before) if not_before > created_at else None,
    )


class SqliteBroker(Broker):
    """Jobs in one sqlite file: durable across restarts, no server, several processes."""

    name = "sqlite"
    section = "embedded"
    section_default = True
    config_model = EmbeddedConf

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
        return SqliteFireStore(conf.path, conf.synchronous, conf.queue, namespace, self._notify)

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
        self._admin.close()
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

    # -- inspection --------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        with self._admin.use("stats") as conn:
            row = conn.execute(sql.STATS, {"now": time.time(), "queue": self.queue}).fetchone()
        names = ("pending", "delayed", "in_flight", "dead")
        return {name: int(v or 0) for name, v in zip(names, row, strict=True)}

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        with self._admin.use("dead letters") as conn:
            if refs is None:
                rows = conn.execute(sql.DEAD_LETTERS, (self.queue, limit)).fetchall()
            else:
                rows = [
                    r
                    for ref in dict.fromkeys(refs)
                    for r in conn.execute(sql.DEAD_LETTER_ONE, (self.queue, ref)).fetchall()
                ][:limit]
        return [DeadLetter(_message(r), error=r[7] or "", failed_at=r[8], ref=r[0]) for r in rows]

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
) -> tuple[Any, ...]:
    now = time.time()
    return (
        new_id(),
        queue,
        to_bytes(value),
        None if key is None else to_bytes(key),
        json.dumps(dict(headers)) if headers else None,
        now,
        now if due is None else due,
    )


class _Writer:
    """Inserts rows durably (one autocommit statement, or one transaction for a batch)."""

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

    def close(self) -> None:
        self._db.close()


class SqliteProducer(_Writer, Producer):
    """Each ``push`` is committed (fsynced with ``synchronous: full``) when it returns."""

    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        refuse_options(self._broker.name, job_id=job_id, priority=priority)
        headers = with_options(headers, time_limit=time_limit, type=type)
        queue = self._broker.queue
        self._broker.middleware.push(
            queue, headers, lambda h: self._insert([_row(value, queue, key, h, None)])
        )

    def push_many(
        self,
        values: Iterable[bytes | str],
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Push several values in one transaction (one fsync); return their ids."""
        rows = [_row(v, self._broker.queue, key, headers, None) for v in values]
        self._insert(rows)
        return [r[0] for r in rows]


class SqliteDelayProducer(_Writer, DelayProducer):
    """Schedules jobs by their ``not_before`` time; ``revoke`` deletes one not yet running."""

    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        refuse_options(self._broker.name, job_id=job_id, priority=priority)
        headers = with_options(headers, time_limit=time_limit, type=type)
        queue = self._broker.queue

        def send(h: Mapping[str, str] | None) -> str:
            row = _row(value, queue, key, h, due)
            self._insert([row])
            return str(row[0])

        return self._broker.middleware.push(queue, headers, send)

    def revoke(self, job_id: str) -> bool:
        with self._db.use("revoke") as conn:
            return conn.execute(sql.REVOKE, (job_id, self._broker.queue, time.time())).rowcount > 0


class SqliteSource(Source):
    """Claims jobs with a lease and keeps the leases of its in-flight jobs alive."""

    def __init__(self, broker: SqliteBroker) -> None:
        self._broker = broker
        self._db = sql.Db(broker.path, "normal")
        self._lease = broker.config.visibility_timeout
        self._poll = broker.config.poll_interval
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        self._held: dict[str, str] = {}  # job id -> owner token, renewed by the heartbeat
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._busy = False  # the last claim found a job: skip the probe

    # -- receiving ---------------------------------------------------------------------------
    def receive(self, timeout: float) -> Delivery[Any] | None:
        """Claim the next due job; poll every ``poll_interval`` (pushes in-process wake us)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._stop.is_set():
            generation = self._broker._generation
            delivery = self._claim()
            if delivery is not None:
                return delivery
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._broker._wait(generation, min(self._poll, remaining))
        return None

    def _claim(self) -> Delivery[Any] | None:
        now = time.time()
        args = {"queue": self._broker.queue, "now": now}
        owner = f"{self._prefix}-{next(self._counter)}"
        try:
            with self._db.use("claim", ConnectionFailed) as conn:
                if not self._busy and conn.execute(sql.PROBE, args).fetchone() is None:
                    return None
                args |= {"until": now + self._lease, "owner": owner}
                if sql.HAS_RETURNING:
                    rows = conn.execute(sql.CLAIM, args).fetchall()
                else:
                    rows = self._claim_compat(conn, args)
        except ConnectionFailed as e:
            if self._stop.is_set():
                return None  # closed while we were claiming
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            logger.warning("%s; trying again", e)
            return None
        self._busy = bool(rows)
        if not rows:
            return None
        message = _message(rows[0])
        with self._held_lock:
            self._held[message.id] = owner
        self._start_heartbeat()
        return Delivery(message, _Lease(message.id, owner))

    @staticmethod
    def _claim_compat(conn: Any, args: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim for sqlite < 3.35 (no RETURNING): the same steps in one write transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute(sql.NEXT, args).fetchone()
            rows: list[tuple[Any, ...]] = []
            if found is not None:
                conn.execute(sql.CLAIM_BY_ID, args | {"id": found[0]})
                rows = conn.execute(sql.SELECT_BY_ID, (found[0],)).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return rows

    # -- settling ----------------------------------------------------------------------------
    def _settle(self, delivery: Delivery[Any], what: str, statement: str, *args: Any) -> None:
        lease: _Lease = delivery.handle
        with self._held_lock:
            self._held.pop(lease.id, None)
        with self._db.use(f"{what} {lease.id}") as conn:
            changed = conn.execute(statement, (*args, lease.id, lease.owner)).rowcount
        if not changed:
            logger.warning(
                "sqlite %s: %s of job %s had no effect: its lease ran out and another worker "
                "took it (visibility_timeout=%.1fs)",
                self._broker.path,
                what,
                lease.id,
                self._lease,
            )

    def ack(self, delivery: Delivery[Any]) -> None:
        self._settle(delivery, "ack", sql.ACK)

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        due = time.time() + max(0.0, delay)
        self._settle(delivery, "retry", sql.RETRY, due, delivery.message.attempt + 1, error)

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        self._settle(delivery, "dead", sql.DEAD, error, time.time())

    def release(self, delivery: Delivery[Any]) -> None:
        self._settle(delivery, "release", sql.RELEASE)
        self._broker._notify()

    # -- leases ------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._beat, name="brokerq-sqlite-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        """Every third of the lease, push the lease of every held job forward."""
        while not self._stop.wait(self._lease / 3):
            with self._held_lock:
                held = list(self._held.items())
            if not held:
                continue
            until = time.time() + self._lease
            try:
                with self._db.transaction("renew leases") as conn:
                    lost = [
                        job_id
                        for job_id, owner in held
                        if not conn.execute(sql.RENEW, (until, job_id, owner)).rowcount
                    ]
            except BrokerError as e:
                logger.warning("%s; trying again in %.1fs", e, self._lease / 3)
                continue
            with self._held_lock:
                lost = [j for j in lost if j in self._held]
                for job_id in lost:
                    del self._held[job_id]
            for job_id in lost:
                logger.warning("sqlite %s: lost the lease of job %s", self._broker.path, job_id)

    def close(self) -> None:
        """Stop the heartbeat and close the connection. Idempotent.

        Jobs still held (a handler abandoned at shutdown) keep their lease until it runs out,
        then run again elsewhere: releasing them now could run them twice at the same time.
        """
        self._stop.set()
        self._broker._notify()
        beat = self._heartbeat
        if beat is not None and beat is not threading.current_thread():
            beat.join()
        self._db.close()
