"""Schedule fire records of the embedded brokers (brokerq.schedule.FireStore).

sqlite: two tables beside ``jobs`` in the same file. A fire is one ``BEGIN IMMEDIATE``
transaction: ``INSERT OR IGNORE`` of the fire id into ``schedule_fires`` (nothing else happens
when the id is there: another scheduler won), the job row (id = fire id), and the last fire of
the schedule moved forward in ``schedule_last``. Fire ids are kept ``FIRE_ID_TTL`` seconds.

memory: the same rules on the broker object, under its lock (one process only).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from brokerq.embedded import _sqlite_db as sql
from brokerq.embedded.config import DEFAULT_PRIORITY, check_priority
from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError
from brokerq.message import Message
from brokerq.schedule.spec import EPOCH
from brokerq.schedule.store import FireStore

FIRE_ID_TTL = 7 * 86400.0
"""Seconds a fire id is remembered (a catch-up never reaches further back in practice)."""
PRUNE_EVERY = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_fires (
    id TEXT PRIMARY KEY,
    fired_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_fires_age ON schedule_fires (fired_at);
CREATE TABLE IF NOT EXISTS schedule_last (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    fire_us INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
"""
CLAIM_ID = "INSERT OR IGNORE INTO schedule_fires (id, fired_at) VALUES (?, ?)"
RECORD = (
    "INSERT INTO schedule_last (namespace, name, fire_us) VALUES (?, ?, ?)"
    " ON CONFLICT (namespace, name) DO UPDATE SET fire_us = MAX(fire_us, excluded.fire_us)"
)
LAST = "SELECT fire_us FROM schedule_last WHERE namespace = ? AND name = ?"
PRUNE = "DELETE FROM schedule_fires WHERE fired_at < ?"

_ONE_US = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    """Microseconds since the unix epoch of an aware datetime."""
    return (t - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + us * _ONE_US


class SqliteFireStore(FireStore):
    """Fire records in the broker's sqlite file; safe across processes sharing the file.

    ``queue`` is the broker's queue (the jobs' ``queue`` column); ``notify`` wakes the broker's
    idle sources in this process after a fire.
    """

    def __init__(
        self,
        path: str,
        synchronous: str,
        queue: str,
        namespace: str,
        notify: Callable[[], None],
        default_priority: int = DEFAULT_PRIORITY,
    ) -> None:
        super().__init__(namespace)
        self._queue = queue
        self._default_priority = default_priority
        self._notify = notify
        self._db = sql.Db(path, synchronous)
        self._ready = False
        self._pruned = 0.0

    def _setup(self) -> None:
        if not self._ready:
            with self._db.use("schedule tables", ConnectionFailed) as conn:
                conn.executescript(SCHEMA)
            self._ready = True

    def last_fire(self, name: str) -> datetime | None:
        self._setup()
        with self._db.use(f"last fire of {name}", ConnectionFailed) as conn:
            row = conn.execute(LAST, (self.namespace, name)).fetchone()
        return None if row is None else from_us(int(row[0]))

    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        self._setup()
        now = time.time()
        row = (
            message.id,
            self._queue,
            message.value,
            message.key,
            json.dumps(dict(message.headers)) if message.headers else None,
            now,
            now,
            check_priority(priority, self._default_priority),
        )
        with self._db.transaction(f"fire {message.id}", DeliveryError) as conn:
            if conn.execute(CLAIM_ID, (message.id, now)).rowcount == 0:
                return False  # another scheduler fired this id: nothing was written
            conn.execute(sql.INSERT, row)
            if record:
                conn.execute(RECORD, (self.namespace, name, to_us(fire_time)))
            if now - self._pruned > PRUNE_EVERY:
                conn.execute(PRUNE, (now - FIRE_ID_TTL,))
                self._pruned = now
        self._notify()
        return True

    def close(self) -> None:
        self._db.close()


Enqueue = Callable[[Iterable[tuple[Message, float]], int | None], None]
"""Queue ``(message, due)`` pairs at a priority (None: the broker's default)."""


class MemoryFireRecords:
    """What a MemoryBroker remembers of fires: the ids and each schedule's last fire."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[str] = set()
        self.last: dict[tuple[str, str], datetime] = {}


class MemoryFireStore(FireStore):
    """Fire records on a MemoryBroker (``records`` are shared by every scheduler of that
    broker object; ``enqueue`` queues ``(message, due)`` pairs on it)."""

    def __init__(self, namespace: str, records: MemoryFireRecords, enqueue: Enqueue) -> None:
        super().__init__(namespace)
        self._records = records
        self._enqueue = enqueue

    def last_fire(self, name: str) -> datetime | None:
        with self._records.lock:
            return self._records.last.get((self.namespace, name))

    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        with self._records.lock:
            if message.id in self._records.ids:
                return False
            try:
                self._enqueue([(message, time.time())], priority)
            except BrokerError as e:
                raise DeliveryError(f"fire {message.id}: {e}") from e
            self._records.ids.add(message.id)
            key = (self.namespace, name)
            last = self._records.last.get(key)
            if record and (last is None or fire_time > last):
                self._records.last[key] = fire_time
        return True
