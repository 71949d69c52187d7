"""Where each job was written, recorded in Redis without waiting for each answer.

``Producer.delay`` returns the job's brokerq id; ``revoke`` from any process (the CLI)
finds the job's copies through ``<prefix>{<id>}:copies`` (brokerq_beanstalk.guard). Waiting
for that SET would add a Redis round trip to every put, so the producer writes it on a
connection of its own and reads the answers later: before a revoke, at close, or once
``MAX_UNREAD`` are waiting. Redis handles commands in the order they arrive, so a revoke
sent after ``delay`` returned always finds the record. One owner: the producer, under its
lock. Redis Cluster clients (no connection pool) record synchronously.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.guard import Guard

logger = logging.getLogger(__name__)

MAX_UNREAD = 256  # unread answers: the next write reads them first


class CopiesLog:
    """Pipelined ``copies`` records of one producer."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._conn: Any = None
        self._unread = 0

    def record(self, job_id: str, due: float, copies: list[str]) -> None:
        """Send the record; ConnectionFailed when Redis cannot take it."""
        pool = self.guard.pool
        if pool is None:
            self.guard.record_copies(job_id, due, copies)
            return
        command = self.guard.copies_command(job_id, due, copies)
        try:
            if self._unread >= MAX_UNREAD:
                self.drain()
            if self._conn is None:
                self._conn = pool.get_connection()
            self._conn.send_packed_command(self._conn.pack_command(*command))
            self._unread += 1
        except redis.RedisError as e:
            self._drop()
            raise ConnectionFailed(f"redis (copies): {e}") from e

    def record_many(self, records: Sequence[tuple[str, float, list[str]]]) -> None:
        """``record`` for several ``(job id, due, copies)`` in one write (answers read
        later, as for ``record``); ConnectionFailed when Redis cannot take them."""
        commands = [self.guard.copies_command(*r) for r in records]
        pool = self.guard.pool
        if not commands:
            return
        if pool is None:  # Redis Cluster: one pipeline, waited for
            pipe = self.guard.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            self.guard.run("copies", pipe)
            return
        try:
            if self._unread >= MAX_UNREAD:
                self.drain()
            if self._conn is None:
                self._conn = pool.get_connection()
            self._conn.send_packed_command(self._conn.pack_commands(commands))
            self._unread += len(commands)
        except redis.RedisError as e:
            self._drop()
            raise ConnectionFailed(f"redis (copies): {e}") from e

    def drain(self) -> None:
        """Read every answer still waiting; ConnectionFailed if one says it failed."""
        conn, n = self._conn, self._unread
        self._unread = 0
        if conn is None or not n:
            return
        try:
            for _ in range(n):
                conn.read_response()
        except redis.RedisError as e:
            self._drop()
            raise ConnectionFailed(f"redis (copies): {e}") from e

    def close(self) -> None:
        try:
            self.drain()
        except ConnectionFailed as e:
            logger.warning("job copies not recorded in redis: %s", e)
        if self._conn is not None:
            self.guard.pool.release(self._conn)
            self._conn = None

    def _drop(self) -> None:
        conn, self._conn, self._unread = self._conn, None, 0
        if conn is not None:
            conn.disconnect()  # answers may be left unread: never reuse it
            self.guard.pool.release(conn)
