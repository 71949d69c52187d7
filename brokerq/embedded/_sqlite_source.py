"""The receiving side of ``SqliteBroker``: claims with a lease, a heartbeat that renews the
leases of running jobs (never past a delivery's deadline), and settling that only touches a
row this source still owns. See brokerq.embedded.sqlite for the whole design.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from brokerq.broker import Delivery, Source
from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded.config import EmbeddedConf
from brokerq.errors import BrokerError, ConnectionFailed
from brokerq.message import Message
from brokerq.outcome import Failure

PURGE_EVERY = 10.0  # seconds between two purges of finished jobs by one source
PURGE_BATCH = 500  # rows deleted per write transaction
PURGE_BATCHES = 200  # at most this many per purge (100k rows; the next purge continues)


class _Broker(Protocol):
    """What a source needs of its SqliteBroker (no import of it: no cycle)."""

    path: str
    queue: str
    config: EmbeddedConf
    _generation: int

    def _notify(self) -> None: ...

    def _wait(self, generation: int, timeout: float) -> None: ...


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Lease:
    """A delivery's handle: the job id and the owner token written when it was claimed, and
    the seconds its caller-chosen id stays reserved after it finished (None: no such id)."""

    id: str
    owner: str
    unique_for: float | None = None


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


def _failure(row: tuple[Any, ...]) -> Failure:
    """The failure stored with a dead row (its ``error``, ``error_type``, ``traceback``
    columns, as SqliteBroker.dead_letters reads them)."""
    text, error_type, tb = str(row[7] or ""), row[9], row[10] or ""
    if error_type is None:  # dead-lettered by an older brokerq: only the text was kept
        return Failure.parse(text, tb)
    message = "" if text == error_type else text.removeprefix(f"{error_type}: ")
    return Failure(error_type, message, tb)


class SqliteSource(Source):
    """Claims jobs with a lease and keeps the leases of its in-flight jobs alive."""

    def __init__(self, broker: _Broker) -> None:
        self._broker = broker
        self._db = sql.Db(broker.path, "normal")
        self._lease = broker.config.visibility_timeout
        self._poll = broker.config.poll_interval
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        # job id -> (owner token, delivery): leases the heartbeat renews, up to the deadline
        self._held: dict[str, tuple[str, Delivery[Any]]] = {}
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._busy = False  # the last claim found a job: skip the probe
        self._keep_done = broker.config.keep_done
        self._purged = 0.0  # when finished rows were last purged (unix seconds)

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
        unique_for = rows[0][7]
        delivery: Delivery[Any] = Delivery(message, _Lease(message.id, owner, unique_for))
        with self._held_lock:
            self._held[message.id] = (owner, delivery)
        self._start_heartbeat()
        return delivery

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
        """Delete the row, or keep it as 'done' for ``keep_done`` seconds (or its id's
        ``unique_for``, when longer) so Broker.job can answer; one statement either way."""
        unique_for = delivery.handle.unique_for
        if not self._keep_done and unique_for is None:
            self._settle(delivery, "ack", sql.ACK)
            return
        now = time.time()
        forget = now + max(self._keep_done, unique_for or 0.0)
        self._settle(delivery, "ack", sql.ACK_KEEP, now, forget)

    def retry(self, delivery: Delivery[Any], delay: float, error: Failure) -> None:
        due = time.time() + max(0.0, delay)
        self._settle(delivery, "retry", sql.RETRY, due, delivery.message.attempt + 1, str(error))

    def dead(self, delivery: Delivery[Any], error: Failure) -> None:
        failure = Failure.parse(error)
        self._settle(
            delivery,
            "dead",
            sql.DEAD,
            str(failure),
            failure.type,
            failure.traceback or None,
            time.time(),
        )

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
        """Every third of the lease, push the lease of every held job forward, but never
        once its delivery's deadline has passed: from then on the lease runs out within
        ``visibility_timeout`` and the job goes to another worker, unless this process's
        Worker settles it first (it fails a job it abandons at the deadline)."""
        while not self._stop.wait(self._lease / 3):
            now = time.time()
            if now - self._purged >= PURGE_EVERY:
                self._purged = now
                self._purge(now)
            until = now + self._lease
            renew: list[tuple[float, str, str]] = []
            expired: list[str] = []
            with self._held_lock:
                for job_id, (owner, delivery) in list(self._held.items()):
                    if not delivery.renewable(now):
                        del self._held[job_id]
                        expired.append(job_id)
                    else:
                        renew.append((until, job_id, owner))
            for job_id in expired:
                logger.warning(
                    "sqlite %s: job %s is past its time limit and grace; its lease is no "
                    "longer renewed and another worker may take it",
                    self._broker.path,
                    job_id,
                )
            if not renew:
                continue
            try:
                with self._db.transaction("renew leases") as conn:
                    lost = [r[1] for r in renew if not conn.execute(sql.RENEW, r).rowcount]
            except BrokerError as e:
                logger.warning("%s; trying again in %.1fs", e, self._lease / 3)
                continue
            with self._held_lock:
                lost = [j for j in lost if j in self._held]
                for job_id in lost:
                    del self._held[job_id]
            for job_id in lost:
                logger.warning("sqlite %s: lost the lease of job %s", self._broker.path, job_id)

    def _purge(self, now: float) -> None:
        """Forget finished jobs past their keep time, a few hundred rows per short write
        transaction (runs on the heartbeat thread: no thread of its own)."""
        try:
            for _ in range(PURGE_BATCHES):
                with self._db.use("purge finished jobs") as conn:
                    args = (self._broker.queue, now, PURGE_BATCH)
                    if conn.execute(sql.PURGE_FINISHED, args).rowcount < PURGE_BATCH:
                        return
        except BrokerError as e:
            logger.warning("%s; trying again later", e)

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
