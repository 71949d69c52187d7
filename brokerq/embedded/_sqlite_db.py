"""The sqlite file underneath ``SqliteBroker``: schema, statements, and a locked connection.

Every producer, source and the broker's admin side own one connection each, opened lazily
and serialised by a lock (``check_same_thread=False`` is safe because of that lock): the
worker settles deliveries from its handler threads, and sqlite serialises writers anyway.
Connections run in autocommit mode (``isolation_level=None``) so a lone statement is its own
transaction, which takes the write lock before reading: two claimers can never pick the same
row, and no stale read snapshot can fail an upgrade with SQLITE_BUSY_SNAPSHOT.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from brokerq.errors import BrokerError, ConfigError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process's write lock before failing."""

HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    value BLOB NOT NULL,
    key BLOB,
    headers TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    not_before REAL NOT NULL,
    lease_until REAL,
    owner TEXT,
    state TEXT NOT NULL DEFAULT 'ready',
    error TEXT,
    failed_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, state, not_before, id);
"""

COLUMNS = "id, value, key, headers, attempt, created_at, not_before"

INSERT = (
    "INSERT INTO jobs (id, queue, value, key, headers, attempt, created_at, not_before)"
    " VALUES (?, ?, ?, ?, ?, 1, ?, ?)"
)

# A job is claimable when it is ready, due, and nobody holds a live lease on it.
_CLAIMABLE = (
    "queue = :queue AND state = 'ready' AND not_before <= :now"
    " AND (lease_until IS NULL OR lease_until <= :now)"
)
PROBE = f"SELECT 1 FROM jobs WHERE {_CLAIMABLE} LIMIT 1"
NEXT = f"SELECT id FROM jobs WHERE {_CLAIMABLE} ORDER BY not_before, id LIMIT 1"
# An expired lease means the previous delivery was never settled (its worker died): that
# run counts as an attempt. release() clears the lease, so a released job keeps its attempt.
CLAIM = (
    "UPDATE jobs SET lease_until = :until, owner = :owner,"
    " attempt = attempt + (lease_until IS NOT NULL)"
    f" WHERE id = ({NEXT}) RETURNING {COLUMNS}"
)
CLAIM_BY_ID = (
    "UPDATE jobs SET lease_until = :until, owner = :owner,"
    " attempt = attempt + (lease_until IS NOT NULL) WHERE id = :id"
)
SELECT_BY_ID = f"SELECT {COLUMNS} FROM jobs WHERE id = ?"

ACK = "DELETE FROM jobs WHERE id = ? AND owner = ?"
RETRY = (
    "UPDATE jobs SET not_before = ?, attempt = ?, error = ?, lease_until = NULL, owner = NULL"
    " WHERE id = ? AND owner = ?"
)
DEAD = (
    "UPDATE jobs SET state = 'dead', error = ?, failed_at = ?, lease_until = NULL, owner = NULL"
    " WHERE id = ? AND owner = ?"
)
RELEASE = "UPDATE jobs SET lease_until = NULL, owner = NULL WHERE id = ? AND owner = ?"
RENEW = "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ?"
REVOKE = (
    "DELETE FROM jobs WHERE id = ? AND queue = ? AND state = 'ready'"
    " AND (lease_until IS NULL OR lease_until <= ?)"
)
STATS = """
SELECT
  SUM(state = 'ready' AND (lease_until IS NULL OR lease_until <= :now) AND not_before <= :now),
  SUM(state = 'ready' AND (lease_until IS NULL OR lease_until <= :now) AND not_before > :now),
  SUM(state = 'ready' AND lease_until > :now),
  SUM(state = 'dead')
FROM jobs WHERE queue = :queue
"""
DEAD_LETTERS = (
    f"SELECT {COLUMNS}, error, failed_at FROM jobs WHERE queue = ? AND state = 'dead'"
    " ORDER BY failed_at, id LIMIT ?"
)
DEAD_LETTER_ONE = (
    f"SELECT {COLUMNS}, error, failed_at FROM jobs WHERE queue = ? AND state = 'dead' AND id = ?"
)
_REDRIVE = (
    "UPDATE jobs SET state = 'ready', attempt = 1, not_before = created_at, error = NULL,"
    " failed_at = NULL WHERE queue = ? AND state = 'dead'"
)
RETRY_DEAD_ALL = _REDRIVE
RETRY_DEAD_ONE = _REDRIVE + " AND id = ?"
PURGE_DEAD = "DELETE FROM jobs WHERE queue = ? AND state = 'dead'"
PURGE_DEAD_ONE = PURGE_DEAD + " AND id = ?"


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with a busy timeout and make sure the schema exists.

    ConfigError when the path cannot be a database file (a directory, a missing directory);
    sqlite3.Error for everything the driver reports.
    """
    if os.path.isdir(path):
        raise ConfigError(f"embedded.path {path!r} is a directory, not a database file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"embedded.path {path!r}: directory {parent!r} does not exist")
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        # WAL is a property of the file: switch once, not on every open (that needs a lock).
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                logger.warning("sqlite %s: journal_mode is %s, not wal", path, mode)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


class Db:
    """One lazily opened connection, used under ``lock`` from any thread."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self.lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False

    @contextmanager
    def use(
        self, what: str, error: Callable[[str], BrokerError] = BrokerError
    ) -> Iterator[sqlite3.Connection]:
        """Hold the lock and the connection; driver errors become ``error`` naming the file."""
        with self.lock:
            if self._closed:
                raise error(f"sqlite {self.path}: {what}: already closed")
            try:
                if self._conn is not None and self._pid != os.getpid():
                    self._conn = None  # forked: the parent's connection must not be used here
                if self._conn is None:
                    self._conn = connect(self.path, self.synchronous)
                    self._pid = os.getpid()
                yield self._conn
            except sqlite3.Error as e:
                raise error(f"sqlite {self.path}: {what}: {e}") from e

    @contextmanager
    def transaction(
        self, what: str, error: Callable[[str], BrokerError] = BrokerError
    ) -> Iterator[sqlite3.Connection]:
        """``use`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any exception)."""
        with self.use(what, error) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection (waiting for a statement in progress). Idempotent."""
        with self.lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    logger.exception("sqlite %s: close failed", self.path)
                self._conn = None
