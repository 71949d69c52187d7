"""Worker heartbeats for the embedded brokers: a ``workers`` table in the sqlite file, or a
dict for the memory broker. An entry lives until ``expires`` (unix seconds); listing skips and
deletes expired ones. A row keeps the whole WorkerInfo as JSON, so fields the contract adds
later are stored without a schema change."""

from __future__ import annotations

import sqlite3
import threading
import time

from brokerq.broker import WorkerInfo
from brokerq.heartbeat import by_name, from_json, to_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    info TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (queue, id)
)
"""
UPSERT = "INSERT OR REPLACE INTO workers (queue, id, info, expires) VALUES (?, ?, ?, ?)"
LIVE = "SELECT info FROM workers WHERE queue = ? AND expires > ?"
EXPIRE = "DELETE FROM workers WHERE expires <= ?"


def worker_id(info: WorkerInfo) -> str:
    """One process's identity: host, pid and start time (a restarted pid is a new worker)."""
    return f"{info.host}:{info.pid}:{info.started:.3f}"


def sqlite_beat(conn: sqlite3.Connection, queue: str, info: WorkerInfo, ttl: float) -> None:
    conn.execute(SCHEMA)
    conn.execute(UPSERT, (queue, worker_id(info), to_json(info), time.time() + ttl))


def sqlite_live(conn: sqlite3.Connection, queue: str) -> list[WorkerInfo]:
    conn.execute(SCHEMA)
    now = time.time()
    rows = conn.execute(LIVE, (queue, now)).fetchall()
    conn.execute(EXPIRE, (now,))
    return by_name([w for (text,) in rows if (w := from_json(text)) is not None])


class LiveWorkers:
    """The memory broker's heartbeats (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[WorkerInfo, float]] = {}

    def beat(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            self._beats[worker_id(info)] = (info, time.time() + ttl)

    def live(self) -> list[WorkerInfo]:
        now = time.time()
        with self._lock:
            for key in [k for k, (_, until) in self._beats.items() if until <= now]:
                del self._beats[key]
            return by_name([i for i, _ in self._beats.values()])
