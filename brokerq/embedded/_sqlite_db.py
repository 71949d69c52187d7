"""The sqlite file underneath ``SqliteBroker``: schema, statements, and a locked connection.

Every producer, source and the broker's admin side own one connection each, opened lazily
and serialised by a lock (``check_same_thread=False`` is safe because of that lock): the
worker settles deliveries from its handler threads, and sqlite serialises writers anyway.
Connections run in autocommit mode (``isolation_level=None``) so a lone statement is its own
transaction, which takes the write lock before reading: two claimers can never pick the same
row, and no stale read snapshot can fail an upgrade with SQLITE_BUSY_SNAPSHOT.

Read-only users (``stats``, dead-letter listing) open the file with ``mode=ro``: they never
create the file, its schema or its WAL mode. Files written by an older brokerq get the
columns added since (``priority``, ``error_type``, ``traceback``) on first read-write open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import urllib.parse
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
    failed_at REAL,
    priority INTEGER NOT NULL DEFAULT 2,
    error_type TEXT,
    traceback TEXT,
    unique_for REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, state, not_before, id);
CREATE TABLE IF NOT EXISTS paused (
    queue TEXT PRIMARY KEY,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_windows (
    key TEXT PRIMARY KEY,
    window REAL NOT NULL,
    count INTEGER NOT NULL
);
"""
# Created after the migration below (an old file has no priority column until then).
INDEXES = "CREATE INDEX IF NOT EXISTS jobs_next ON jobs (queue, state, priority, not_before, id);"

# Columns added since the first release, with their definitions (added by ``migrate``).
ADDED_COLUMNS = {
    "priority": "INTEGER NOT NULL DEFAULT 2",
    "error_type": "TEXT",
    "traceback": "TEXT",
    "unique_for": "REAL",
}

COLUMNS = "id, value, key, headers, attempt, created_at, not_before"

INSERT = (
    "INSERT INTO jobs (id, queue, value, key, headers, attempt, created_at, not_before, priority)"
    " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)"
)
# A job with a caller-chosen id (brokerq.embedded._sqlite_jobs reserves the id first).
INSERT_UNIQUE = (
    "INSERT INTO jobs (id, queue, value, key, headers, attempt, created_at, not_before, priority,"
    " unique_for) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"
)

# A job is claimable when it is ready, due, and nobody holds a live lease on it.
_CLAIMABLE = (
    "queue = :queue AND state = 'ready' AND not_before <= :now"
    " AND (lease_until IS NULL OR lease_until <= :now)"
)
PROBE = f"SELECT 1 FROM jobs WHERE {_CLAIMABLE} LIMIT 1"
# Lowest priority first (beanstalkd's rule), then the earliest due, then push order. The
# index walk stops at the first claimable row; left to itself the planner range-scans every
# due row and sorts them (25 ms instead of 0.03 ms per claim with 20k jobs due).
NEXT = (
    f"SELECT id FROM jobs INDEXED BY jobs_next WHERE {_CLAIMABLE}"
    " ORDER BY priority, not_before, id LIMIT 1"
)
# An expired lease means the previous delivery was never settled (its worker died): that
# run counts as an attempt. release() clears the lease, so a released job keeps its attempt.
CLAIM = (
    "UPDATE jobs SET lease_until = :until, owner = :owner,"
    " attempt = attempt + (lease_until IS NOT NULL)"
    f" WHERE id = ({NEXT}) RETURNING {COLUMNS}, unique_for"
)
CLAIM_BY_ID = (
    "UPDATE jobs SET lease_until = :until, owner = :owner,"
    " attempt = attempt + (lease_until IS NOT NULL) WHERE id = :id"
)
SELECT_BY_ID = f"SELECT {COLUMNS}, unique_for FROM jobs WHERE id = ?"

# Finished jobs: state 'done' (or 'revoked') with ``failed_at`` = when it finished and
# ``not_before`` = when to forget it (finished + max(keep_done, unique_for)): the jobs_due
# index then serves the purge, and the ack still rewrites one row in one statement. With
# keep_done 0 and no unique_for the ack deletes the row at once.
ACK = "DELETE FROM jobs WHERE id = ? AND owner = ?"
ACK_KEEP = (
    "UPDATE jobs SET state = 'done', failed_at = ?, not_before = ?, lease_until = NULL,"
    " owner = NULL WHERE id = ? AND owner = ?"
)
RETRY = (
    "UPDATE jobs SET not_before = ?, attempt = ?, error = ?, lease_until = NULL, owner = NULL"
    " WHERE id = ? AND owner = ?"
)
DEAD = (
    "UPDATE jobs SET state = 'dead', error = ?, error_type = ?, traceback = ?, failed_at = ?,"
    " lease_until = NULL, owner = NULL WHERE id = ? AND owner = ?"
)
PURGE_FINISHED = (
    "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE queue = ?"
    " AND state IN ('done', 'revoked') AND not_before <= ? LIMIT ?)"
)
RELEASE = "UPDATE jobs SET lease_until = NULL, owner = NULL WHERE id = ? AND owner = ?"
RENEW = "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ?"
_REVOCABLE = (
    "id = :id AND queue = :queue AND state = 'ready'"
    " AND (lease_until IS NULL OR lease_until <= :now)"
)
REVOKE = f"DELETE FROM jobs WHERE {_REVOCABLE}"
REVOKE_KEEP = (
    "UPDATE jobs SET state = 'revoked', failed_at = :now, not_before = :forget,"
    f" lease_until = NULL, owner = NULL WHERE {_REVOCABLE}"
)
# Only ready and dead rows are counted (finished ones are skipped through the index).
STATS = """
SELECT
  SUM(state = 'ready' AND (lease_until IS NULL OR lease_until <= :now) AND not_before <= :now),
  SUM(state = 'ready' AND (lease_until IS NULL OR lease_until <= :now) AND not_before > :now),
  SUM(state = 'ready' AND lease_until > :now),
  SUM(state = 'dead')
FROM jobs WHERE queue = :queue AND state IN ('ready', 'dead')
"""
DEAD_LETTERS = (
    f"SELECT {COLUMNS}, error, failed_at, error_type, traceback FROM jobs"
    " WHERE queue = ? AND state = 'dead' ORDER BY failed_at, id LIMIT ?"
)
DEAD_LETTER_ONE = (
    f"SELECT {COLUMNS}, error, failed_at, error_type, traceback FROM jobs"
    " WHERE queue = ? AND state = 'dead' AND id = ?"
)
# A redriven job keeps its priority; attempt, due time and error start afresh.
_REDRIVE = (
    "UPDATE jobs SET state = 'ready', attempt = 1, not_before = created_at, error = NULL,"
    " error_type = NULL, traceback = NULL, failed_at = NULL WHERE queue = ? AND state = 'dead'"
)
RETRY_DEAD_ALL = _REDRIVE
RETRY_DEAD_ONE = _REDRIVE + " AND id = ?"
PURGE_DEAD = "DELETE FROM jobs WHERE queue = ? AND state = 'dead'"
PURGE_DEAD_ONE = PURGE_DEAD + " AND id = ?"


def _check_path(path: str, writable: bool) -> None:
    """ConfigError when ``path`` cannot be (or, read-only, is not) a database file we may use."""
    if os.path.isdir(path):
        raise ConfigError(f"embedded.path {path!r} is a directory, not a database file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"embedded.path {path!r}: directory {parent!r} does not exist")
    if not writable:
        if not os.path.exists(path):
            raise ConfigError(
                f"embedded.path {path!r}: no such database file (nothing was pushed to it yet)"
            )
        return
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"embedded.path {path!r}: the database file is read-only")
    if not os.access(parent, os.W_OK):
        raise ConfigError(
            f"embedded.path {path!r}: directory {parent!r} is not writable (sqlite creates "
            "the file and its -wal/-shm files there)"
        )


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with a busy timeout and make sure the schema exists.

    ConfigError when the path cannot be a database file (a directory, a missing or read-only
    directory, a read-only file); sqlite3.Error for everything the driver reports.
    """
    _check_path(path, writable=True)
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
        migrate(conn)
        conn.execute(INDEXES)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a file written by an older brokerq lacks (one write transaction, so
    two processes opening the same old file do not both add them)."""
    if not _missing_columns(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name in _missing_columns(conn):
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {ADDED_COLUMNS[name]}")
            logger.info("sqlite: added column jobs.%s (file written by an older brokerq)", name)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _missing_columns(conn: sqlite3.Connection) -> list[str]:
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    return [name for name in ADDED_COLUMNS if name not in have]


def connect_readonly(path: str) -> sqlite3.Connection:
    """Open an existing database file read-only: creates and changes nothing.

    ConfigError when the file does not exist, or when it was written by an older brokerq and
    not opened read-write since (its schema lacks columns the queries need).
    """
    _check_path(path, writable=False)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        # A WAL file in a read-only directory without its -shm file: when no -wal file is
        # left either, the database file holds everything and can be read as immutable.
        if os.path.exists(path + "-wal"):
            raise
        conn = sqlite3.connect(
            uri + "&immutable=1", uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False
        )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "jobs" not in tables:
            raise ConfigError(f"embedded.path {path!r}: not a brokerq database (no jobs table)")
        missing = _missing_columns(conn)
        if missing:
            raise ConfigError(
                f"embedded.path {path!r}: written by an older brokerq (no column "
                f"{', '.join(missing)}); run `brokerq check` on it once to upgrade it"
            )
    except BaseException:
        conn.close()
        raise
    return conn


class Db:
    """One lazily opened connection, used under ``lock`` from any thread."""

    def __init__(self, path: str, synchronous: str, *, readonly: bool = False) -> None:
        self.path = path
        self.synchronous = synchronous
        self.readonly = readonly
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
                    self._conn = (
                        connect_readonly(self.path)
                        if self.readonly
                        else connect(self.path, self.synchronous)
                    )
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
