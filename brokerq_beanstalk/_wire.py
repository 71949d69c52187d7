"""A minimal beanstalkd connection for the producer: split send / read so one thread writes
the same job to several nodes at once (send to all, then read every answer).

Errors are translated here: socket errors → ConnectionFailed, JOB_TOO_BIG → MessageTooLarge,
any other refusal → DeliveryError; each names the endpoint.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import BinaryIO

from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq_beanstalk.config import split_endpoint

logger = logging.getLogger(__name__)


class NodeConn:
    """One lazily (re)connected connection to one node, using one tube. Not thread-safe."""

    def __init__(self, endpoint: str, tube: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.tube = tube
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._down_until = 0.0
        self._backoff = 0.0

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._sock is not None:
            return
        now = time.monotonic()
        if now < self._down_until:
            raise ConnectionFailed(
                f"beanstalkd {self.endpoint}: down, retrying in {self._down_until - now:.1f}s"
            )
        try:
            sock = socket.create_connection(split_endpoint(self.endpoint), timeout=self.timeout)
        except OSError as e:
            self._mark_down()
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, sock.makefile("rb")
        self._backoff = 0.0
        if self.tube != "default":
            self._send(b"use %s\r\n" % self.tube.encode())
            self._expect(b"USING")

    def _mark_down(self) -> None:
        self._backoff = min(5.0, self._backoff * 2 or 0.5)
        self._down_until = time.monotonic() + self._backoff

    def close(self) -> None:
        sock, reader = self._sock, self._reader
        self._sock = self._reader = None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def _fail(self, e: BaseException) -> ConnectionFailed:
        self.close()
        self._mark_down()
        return ConnectionFailed(f"beanstalkd {self.endpoint}: {e or type(e).__name__}")

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise self._fail(e) from e

    def _line(self) -> bytes:
        assert self._reader is not None
        try:
            line = self._reader.readline()
        except OSError as e:
            raise self._fail(e) from e
        if not line.endswith(b"\r\n"):
            raise self._fail(EOFError("connection closed"))
        return line[:-2]

    def _expect(self, status: bytes) -> list[bytes]:
        parts = self._line().split()
        if not parts or parts[0] != status:
            raise DeliveryError(f"beanstalkd {self.endpoint}: unexpected answer {parts!r}")
        return parts[1:]

    # -- commands ---------------------------------------------------------------------------
    def send_put(self, body: bytes, priority: int, delay: int, ttr: int) -> None:
        """First half of ``put``: connect if needed and send the command."""
        self._connect()
        self._send(b"put %d %d %d %d\r\n%s\r\n" % (priority, delay, ttr, len(body), body))

    def read_put(self) -> int:
        """Second half of ``put``: the job id, or raise naming why the node refused it."""
        parts = self._line().split()
        status = parts[0] if parts else b""
        if status == b"INSERTED":
            return int(parts[1])
        if status == b"JOB_TOO_BIG":
            raise MessageTooLarge(f"beanstalkd {self.endpoint}: job too big (max-job-size)")
        if status == b"BURIED":  # out of memory: the job exists but is buried; take it back
            try:
                self._send(b"delete %s\r\n" % parts[1])
                self._line()
            except BrokerError:
                pass
        raise DeliveryError(f"beanstalkd {self.endpoint}: put refused: {b' '.join(parts)!r}")

    def delete(self, job_id: int) -> bool:
        """Delete a job that is not reserved by another client; False when not found."""
        self._connect()
        self._send(b"delete %d\r\n" % job_id)
        status = self._line()
        return status == b"DELETED"
