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
import time
from collections.abc import Sequence
from typing import Any

import redis

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.lua import _REVOKE

logger = logging.getLogger(__name__)

MAX_UNREAD = 256  # unread answers: the next write reads them first


def copies_command(guard: Guard, job_id: str, due: float, copies: list[str]) -> tuple[Any, ...]:
    """The SET that remembers where a job was written (``endpoint/job id``) until its due
    time has passed by ``done_ttl``, so that any process can revoke it."""
    ms = guard.done_ms + max(0, int((due - time.time()) * 1000))
    return ("SET", guard.key(job_id, "copies"), f"{due!r} {','.join(copies)}", "PX", ms)


def revoke(guard: Guard, job_id: str, known: bool = False) -> tuple[bool, list[str]]:
    """Mark a job revoked unless it already ran, was dead-lettered or revoked, and free its
    caller-chosen id.

    ``known``: the caller knows the job exists (it holds its copies); otherwise only a
    job whose copies are recorded here is marked. Returns (marked now, the recorded
    copies). The mark lives ``done_ttl`` beyond the job's due time.
    """
    keys = [guard.key(job_id, k) for k in ("copies", "done", "unique")]
    marked, record = guard.eval("revoke", _REVOKE, keys, [guard.done_ms, "1" if known else "0"])
    copies: list[str] = []
    if record:
        _, _, listed = record.decode().partition(" ")
        copies = [c for c in listed.split(",") if c]
    return bool(marked), copies


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
            self.guard.eval_command("copies", copies_command(self.guard, job_id, due, copies))
            return
        command = copies_command(self.guard, job_id, due, copies)
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
        commands = [copies_command(self.guard, *r) for r in records]
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
