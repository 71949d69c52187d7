"""The producer's connection to one node: split send / read so one thread writes the same job
to several nodes at once (send to all, then read every answer).

Errors: connection trouble → ConnectionFailed (the node is then skipped for a short backoff),
JOB_TOO_BIG → MessageTooLarge, any other refusal → DeliveryError; each names the endpoint.
A refusal that leaves the stream in doubt closes the connection (brokerq_beanstalk.protocol).
"""

from __future__ import annotations

import logging
import time

from brokerq.errors import ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq_beanstalk.config import split_endpoint
from brokerq_beanstalk.protocol import Conn, check_put

logger = logging.getLogger(__name__)


class NodeConn:
    """One lazily (re)connected connection to one node, using one tube. Not thread-safe."""

    def __init__(self, endpoint: str, tube: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.tube = tube
        self.timeout = timeout
        self._conn: Conn | None = None
        self.down_until = 0.0  # monotonic: skip this node until then
        self._backoff = 0.0

    def _connected(self) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        now = time.monotonic()
        if now < self.down_until:
            raise ConnectionFailed(
                f"beanstalkd {self.endpoint}: down, retrying in {self.down_until - now:.1f}s"
            )
        try:
            conn = Conn(self.endpoint, split_endpoint(self.endpoint), self.timeout)
            conn.use(self.tube)
        except ConnectionFailed:
            self._mark_down()
            raise
        self._conn, self._backoff = conn, 0.0
        return conn

    def _mark_down(self) -> None:
        self._backoff = min(5.0, self._backoff * 2 or 0.5)
        self.down_until = time.monotonic() + self._backoff

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands ---------------------------------------------------------------------------
    def send_put(self, body: bytes, priority: int, delay: int, ttr: int) -> None:
        """First half of ``put``: connect if needed and send the command (fields checked)."""
        check_put(priority, delay, ttr)
        conn = self._connected()
        try:
            conn.send(b"put %d %d %d %d\r\n%s\r\n" % (priority, delay, ttr, len(body), body))
        except ConnectionFailed:
            self._mark_down()
            raise

    def read_put(self) -> int:
        """Second half of ``put``: the job id, or raise naming why the node refused it."""
        conn = self._conn
        if conn is None:
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: connection closed")
        try:
            parts = conn.line("put")
        except ConnectionFailed:
            self._mark_down()
            raise
        status = parts[0]
        if status == b"INSERTED" and len(parts) == 2:
            return int(parts[1])
        if status == b"JOB_TOO_BIG":
            raise MessageTooLarge(f"beanstalkd {self.endpoint}: job too big (max-job-size)")
        if status == b"BURIED" and len(parts) == 2:  # out of memory: the job exists, take it back
            try:
                conn.send(b"delete %s\r\n" % parts[1])
                conn.line()
            except ConnectionFailed:
                pass
        elif status not in (b"DRAINING", b"OUT_OF_MEMORY", b"INTERNAL_ERROR"):
            raise conn.unexpected("put", parts)
        raise DeliveryError(f"beanstalkd {self.endpoint}: put refused: {b' '.join(parts)!r}")

    def delete(self, job_id: int) -> bool:
        """Delete a job that is not reserved by another client; False when not found."""
        conn = self._connected()
        conn.send(b"delete %d\r\n" % job_id)
        parts = conn.line()
        if parts[0] not in (b"DELETED", b"NOT_FOUND"):
            raise conn.unexpected("delete", parts)
        return parts[0] == b"DELETED"
