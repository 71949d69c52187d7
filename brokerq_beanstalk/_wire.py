"""The producer's connection to one node: commands are sent at once, answers read as they come.

beanstalkd answers the commands of one connection in the order it reads them
(doc/protocol.txt), so a connection keeps the answers it still owes in a queue, each with a
callback, and hands every answer to its callback when it arrives. That lets one thread write
the same job to several nodes, return once ``min_written`` of them acked and pick up the last
answer later (brokerq_beanstalk.fanout), and write many jobs per write (``send_puts``).
Every answer the producer reads is one line; the connection keeps its own line buffer so
``select`` tells truthfully whether one is waiting.

Errors: connection trouble → ConnectionFailed (the node is then skipped for a short backoff,
and every answer it owed fails with it), JOB_TOO_BIG → MessageTooLarge, any other refusal →
DeliveryError; each names the endpoint. An answer that leaves the stream in doubt closes the
connection (brokerq_beanstalk.protocol). Not thread-safe: one owner (the producer's lock).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence

from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq_beanstalk.config import split_endpoint
from brokerq_beanstalk.protocol import DESYNC, ProtocolError, check_put

logger = logging.getLogger(__name__)

#: Called with a put's job id, or the error that put met.
PutDone = Callable[[int | BrokerError], None]
_Owed = Callable[[list[bytes] | BrokerError], None]


def _ignore(answer: list[bytes] | BrokerError) -> None:
    """The callback of answers nobody waits for (the delete of a BURIED put)."""


class NodeConn:
    """One lazily (re)connected connection to one node, using one tube."""

    def __init__(self, endpoint: str, tube: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.tube = tube
        self.timeout = timeout
        self.down_until = 0.0  # monotonic: skip this node until then
        self._backoff = 0.0
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._owed: deque[_Owed] = deque()
        self._last: int | BrokerError | None = None  # for send_put / read_put without callback
        self._since = 0.0  # monotonic: last answer read, or first one owed since

    @property
    def owes(self) -> int:
        """Answers sent for and not read yet."""
        return len(self._owed)

    def fileno(self) -> int:
        """The socket's descriptor (for ``select``); -1 when not connected."""
        return self._sock.fileno() if self._sock is not None else -1

    # -- connection -----------------------------------------------------------------------
    def _connected(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        if now < self.down_until:
            raise ConnectionFailed(
                f"beanstalkd {self.endpoint}: down, retrying in {self.down_until - now:.1f}s"
            )
        try:
            sock = socket.create_connection(split_endpoint(self.endpoint), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            self._mark_down()
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: {e}") from e
        self._sock, self._buf = sock, bytearray()
        if self.tube != "default":  # a refusal closes the connection: never puts into default
            self._send(b"use %s\r\n" % self.tube.encode())
            parts = self._line(f"use {self.tube}")
            if parts[0] != b"USING":
                raise self._unexpected(f"use {self.tube}", parts)
        self._backoff = 0.0
        return sock

    def _mark_down(self) -> None:
        self._backoff = min(5.0, self._backoff * 2 or 0.5)
        self.down_until = time.monotonic() + self._backoff

    def close(self) -> None:
        self.fail(ConnectionFailed(f"beanstalkd {self.endpoint}: connection closed"), down=False)

    def fail(self, error: BrokerError, down: bool = True) -> None:
        """Close the connection; every answer still owed fails with ``error``."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
            if down:
                self._mark_down()
        owed, self._owed = self._owed, deque()
        for done in owed:
            done(error)

    def _error(self, what: object) -> ConnectionFailed:
        error = ConnectionFailed(f"beanstalkd {self.endpoint}: {what or 'connection error'}")
        self.fail(error)
        return error

    def _unexpected(self, command: str, parts: list[bytes]) -> ProtocolError:
        text = b" ".join(parts).decode(errors="replace")
        error = ProtocolError(f"beanstalkd {self.endpoint}: {command}: unexpected answer {text!r}")
        self.fail(error)
        return error

    # -- bytes ----------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        sock = self._connected()
        try:
            sock.sendall(data)
        except OSError as e:
            raise self._error(e) from e

    def _recv(self) -> None:
        """Append what the socket holds, waiting up to ``timeout`` for something."""
        sock = self._sock
        if sock is None:
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: connection closed")
        try:
            data = sock.recv(65536)
        except OSError as e:
            raise self._error(e) from e
        if not data:
            raise self._error("connection closed")
        self._buf += data
        self._since = time.monotonic()

    def _next_line(self, what: str) -> list[bytes] | None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        parts = bytes(buf[:end]).split()
        del buf[: end + 2]
        if not parts or parts[0] in DESYNC:
            answer = b" ".join(parts).decode(errors="replace") or "empty answer"
            error = ProtocolError(
                f"beanstalkd {self.endpoint}: {what + ': ' if what else ''}{answer} "
                "(connection closed: out of step)"
            )
            self.fail(error)
            raise error
        return parts

    def _line(self, what: str) -> list[bytes]:
        while True:
            parts = self._next_line(what)
            if parts is not None:
                return parts
            self._recv()

    # -- answers owed ---------------------------------------------------------------------
    def pump(self) -> None:
        """Read from the socket once (waiting up to ``timeout``) and hand every complete
        answer to its callback; ConnectionFailed (after failing what is owed) on trouble."""
        if not self._owed:
            return
        self._recv()
        while self._owed:
            parts = self._next_line("answer")
            if parts is None:
                return
            self._owed.popleft()(parts)

    def overdue(self, now: float) -> bool:
        """True when answers are owed and nothing came for ``timeout`` seconds."""
        return bool(self._owed) and now - self._since > self.timeout

    def settle(self) -> None:
        """Wait for every answer owed (ConnectionFailed if the node fails meanwhile)."""
        while self._owed:
            self.pump()

    # -- put ------------------------------------------------------------------------------
    def send_put(
        self, body: bytes, priority: int, delay: int, ttr: int, done: PutDone | None = None
    ) -> None:
        """Send ``put`` (fields checked); ``done`` gets the job id or the error when the
        answer comes (without ``done``: ``read_put`` waits for it)."""
        self.send_puts([(body, priority, delay, ttr)], [done or self._keep])

    def _keep(self, result: int | BrokerError) -> None:
        self._last = result

    def read_put(self) -> int:
        """The answer to the last ``send_put`` without a callback: the job id, or raise."""
        try:
            self.settle()
        except ConnectionFailed:
            pass  # the put's own callback has the error
        result, self._last = self._last, None
        if isinstance(result, BrokerError):
            raise result
        if result is None:
            raise ConnectionFailed(f"beanstalkd {self.endpoint}: no put waiting for an answer")
        return result

    def send_puts(
        self, puts: Sequence[tuple[bytes, int, int, int]], done: Sequence[PutDone]
    ) -> None:
        """Many ``put``s ``(body, priority, delay, ttr)`` in one write; ``done[i]`` gets the
        answer to ``puts[i]``. Raises (and calls no callback) when nothing could be sent."""
        for _, priority, delay, ttr in puts:
            check_put(priority, delay, ttr)
        self._send(
            b"".join(
                b"put %d %d %d %d\r\n%s\r\n" % (priority, delay, ttr, len(body), body)
                for body, priority, delay, ttr in puts
            )
        )
        if not self._owed:
            self._since = time.monotonic()
        self._owed.extend(self._put_answer(d) for d in done)

    def _put_answer(self, done: PutDone) -> _Owed:
        def answer(parts: list[bytes] | BrokerError) -> None:
            if isinstance(parts, BrokerError):
                done(parts)
                return
            status = parts[0]
            if status == b"INSERTED" and len(parts) == 2:
                done(int(parts[1]))
            elif status == b"JOB_TOO_BIG":
                done(MessageTooLarge(f"beanstalkd {self.endpoint}: job too big (max-job-size)"))
            elif status in (b"DRAINING", b"OUT_OF_MEMORY", b"INTERNAL_ERROR") or (
                status == b"BURIED" and len(parts) == 2
            ):
                done(DeliveryError(f"beanstalkd {self.endpoint}: put refused: {status!r}"))
                if status == b"BURIED":  # out of memory: the job exists, take it back
                    self._owed.append(_ignore)
                    self._send(b"delete %s\r\n" % parts[1])
            else:
                done(self._unexpected("put", parts))

        return answer

    # -- delete ---------------------------------------------------------------------------
    def delete(self, job_id: int) -> bool:
        """Delete a job that is not reserved by another client; False when not found."""
        self.settle()
        self._send(b"delete %d\r\n" % job_id)
        parts = self._line("delete")
        if parts[0] not in (b"DELETED", b"NOT_FOUND"):
            raise self._unexpected("delete", parts)
        return parts[0] == b"DELETED"

    def delete_many(self, job_ids: Sequence[int]) -> None:
        """Delete several jobs in one write (NOT_FOUND is fine); BrokerError on trouble."""
        self.settle()
        self._send(b"".join(b"delete %d\r\n" % jid for jid in job_ids))
        for _ in job_ids:
            parts = self._line("delete")
            if parts[0] not in (b"DELETED", b"NOT_FOUND"):
                raise self._unexpected("delete", parts)


def pump_until(nodes: Sequence[NodeConn], done: Callable[[], bool], timeout: float) -> None:
    """Read answers from ``nodes`` as they arrive until ``done()`` or none is owed; a node
    that owes answers and stays silent ``timeout`` seconds is failed (its answers with it)."""
    while not done():
        owing = [n for n in nodes if n.owes]
        if not owing:
            return
        try:
            ready, _, _ = select.select(owing, [], [], timeout)
        except (OSError, ValueError):  # a socket closed under us: find out which by reading
            ready = owing
        if not ready:
            for node in owing:
                node.fail(ConnectionFailed(f"beanstalkd {node.endpoint}: no answer in {timeout}s"))
            return
        for node in ready:
            try:
                node.pump()
            except ConnectionFailed as e:
                logger.debug("beanstalkd %s: %s", node.endpoint, e)
    now = time.monotonic()
    behind = [n for n in nodes if n.overdue(now)]  # left behind by the others
    if behind:
        ready, _, _ = select.select(behind, [], [], 0)
        for node in behind:
            if node not in ready:
                node.fail(ConnectionFailed(f"beanstalkd {node.endpoint}: no answer in {timeout}s"))
                continue
            try:
                node.pump()
            except ConnectionFailed as e:
                logger.debug("beanstalkd %s: %s", node.endpoint, e)
