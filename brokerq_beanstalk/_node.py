"""One beanstalkd node on the consumer side: a thread that owns the node's connection.

beanstalkd ties a reservation to the connection that made it, so every command on a reserved
job (delete, release, bury, touch) runs on this thread's connection. The thread pipelines:
each turn it writes, in one send, every settle operation queued since the last turn, the
touches that are due and a batch of ``reserve-with-timeout 0``, then reads all the answers.
The copies reserved are handed to the source in one call (one Redis round trip for the
batch); what the source decides for them (delete, release, bury) rides on the next send.

It blocks in ``reserve-with-timeout 1`` only while it holds no reserved job (so no settle
operation can be waiting for this connection); while it holds jobs and the tube is empty it
polls (10-100 ms). Every held job is touched so its TTR never runs out while it waits or its
handler runs. A lost connection bumps ``gen``: operations on jobs reserved by an older
connection are dropped (beanstalkd has already put those jobs back).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from brokerq_beanstalk.config import Beanstalk, split_endpoint

if TYPE_CHECKING:
    from brokerq_beanstalk.source import BeanstalkSource

logger = logging.getLogger(__name__)

RESERVE_TIMEOUT = 1  # seconds a node thread holding no job blocks in reserve
BATCH = 32  # reserves pipelined per turn
POLL_MIN, POLL_MAX = 0.01, 0.1  # polling while jobs are held and the tube is empty


class ProtocolError(Exception):
    """beanstalkd answered something unexpected: the connection is dropped and redone."""


@dataclass(slots=True, eq=False)
class Handle:
    """The backend's handle on a delivery: which node, which connection, which job copy."""

    node: Node
    gen: int
    job_id: int
    token: str

    @property
    def ref(self) -> str:
        return f"{self.node.endpoint}/{self.job_id}"


_SETTLED = {
    b"delete": (b"DELETED",),
    b"release": (b"RELEASED", b"BURIED"),
    b"bury": (b"BURIED",),
    b"touch": (b"TOUCHED",),
}


class Node(threading.Thread):
    """Reserve loop and settle operations for one node."""

    def __init__(self, source: BeanstalkSource, conf: Beanstalk, ttr: float, priority: int) -> None:
        super().__init__(name=f"brokerq-dq-{conf.endpoint}", daemon=True)
        self.source = source
        self.endpoint = conf.endpoint
        self.tube = conf.tube
        self.priority = priority
        self.touch_every = ttr / 3
        self.gen = 0
        self.held: dict[int, float] = {}  # job id → last touch (monotonic), this connection
        self.stop_event = threading.Event()
        self.wake = threading.Event()  # set when an op is queued or the ready buffer has room
        self.waiting = False  # this thread is (about to be) waiting on ``wake``
        self._ops: deque[tuple[str, Handle, int]] = deque()  # from other threads
        self._mine: list[tuple[str, int, int]] = []  # decided on this thread, next send
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._backoff = 0.0
        self._poll = POLL_MIN
        self._idle = False  # the last reserve found nothing: reserve one at a time

    # -- called from other threads ----------------------------------------------------------
    def submit(self, op: str, handle: Handle, delay: int = 0) -> None:
        """Queue ``delete`` / ``release`` / ``bury`` of a reserved copy."""
        self._ops.append((op, handle, delay))
        if self.waiting:
            self.wake.set()

    # -- called from this thread (the source's ``on_reserved``) -----------------------------
    def settle(self, op: str, job_id: int, delay: int = 0) -> None:
        """Queue ``op`` on a copy reserved by the current connection; sent on the next turn."""
        self.held.pop(job_id, None)
        self._mine.append((op, job_id, delay))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not (self.stop_event.is_set() and not self._ops and not self._mine):
                if self._sock is None and not self._connect():
                    continue
                try:
                    self._turn()
                except (OSError, ProtocolError) as e:
                    self._lost(e)
        finally:
            self._close()

    def _turn(self) -> None:
        cmds: list[bytes] = []
        expect: list[tuple[bytes, int]] = []
        self._collect_ops(cmds, expect)
        self._collect_touches(cmds, expect)
        want = 0
        if not self.stop_event.is_set():
            want = min(1 if self._idle else BATCH, self.source.reserve_room())
        if want == 0 and not cmds:
            self._wait(0.05 if self.stop_event.is_set() else 0.5)
            return
        if want and self._idle and not cmds and not self.held:
            # nothing of ours is reserved, so no settle op can wait for us: block
            cmds.append(b"reserve-with-timeout %d\r\n" % RESERVE_TIMEOUT)
        else:
            cmds.extend([b"reserve-with-timeout 0\r\n"] * want)
        self._send(b"".join(cmds))
        for op, job_id in expect:
            self._read_settled(op, job_id)
        jobs = self._read_reserved(want)
        if jobs:
            self._idle = False
            self._poll = POLL_MIN
            self.source.on_reserved(self, jobs)
        elif want:
            self._idle = True
            if self.held and not self._ops:  # cannot block while holding jobs: poll
                self._wait(self._poll)
                self._poll = min(POLL_MAX, self._poll * 2)

    def _wait(self, timeout: float) -> None:
        self.waiting = True
        if not self._ops:  # an op queued before ``waiting`` was seen is not missed
            self.wake.wait(timeout)
        self.waiting = False
        self.wake.clear()

    def _collect_ops(self, cmds: list[bytes], expect: list[tuple[bytes, int]]) -> None:
        ops = self._ops
        while ops:
            op, handle, delay = ops.popleft()
            if handle.gen != self.gen:
                continue  # reserved on a lost connection: beanstalkd already put it back
            self.settle(op, handle.job_id, delay)
        mine, self._mine = self._mine, []
        prio = self.priority
        for op, job_id, delay in mine:
            if op == "delete":
                cmds.append(b"delete %d\r\n" % job_id)
            elif op == "release":
                cmds.append(b"release %d %d %d\r\n" % (job_id, prio, delay))
            elif op == "bury":
                cmds.append(b"bury %d %d\r\n" % (job_id, prio))
            else:
                raise ValueError(op)
            expect.append((op.encode(), job_id))

    def _collect_touches(self, cmds: list[bytes], expect: list[tuple[bytes, int]]) -> None:
        if not self.held:
            return
        now = time.monotonic()
        every = self.touch_every
        for job_id, last in self.held.items():
            if now - last >= every:
                cmds.append(b"touch %d\r\n" % job_id)
                expect.append((b"touch", job_id))
                self.held[job_id] = now

    # -- wire -------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _line(self) -> bytes:
        assert self._reader is not None
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ProtocolError("connection closed")
        return line[:-2]

    def _read_settled(self, op: bytes, job_id: int) -> None:
        status = self._line()
        if status in _SETTLED[op]:
            return
        if status == b"NOT_FOUND":
            self.held.pop(job_id, None)
            logger.debug(
                "beanstalkd %s: %s of job %d: not reserved any more",
                self.endpoint,
                op.decode(),
                job_id,
            )
            return
        raise ProtocolError(f"{op.decode()} {job_id}: {status!r}")

    def _read_reserved(self, n: int) -> list[tuple[int, bytes]]:
        jobs: list[tuple[int, bytes]] = []
        deadline_soon = False
        now = time.monotonic()
        for _ in range(n):
            line = self._line()
            if line.startswith(b"RESERVED "):
                _, jid, size = line.split()
                assert self._reader is not None
                data = self._reader.read(int(size) + 2)
                if len(data) != int(size) + 2:
                    raise ProtocolError("connection closed")
                job_id = int(jid)
                self.held[job_id] = now
                jobs.append((job_id, data[:-2]))
            elif line == b"DEADLINE_SOON":
                deadline_soon = True
            elif line != b"TIMED_OUT":
                raise ProtocolError(f"reserve: {line!r}")
        if deadline_soon:  # a held job's TTR is about to end: touch everything next turn
            for job_id in self.held:
                self.held[job_id] = 0.0
        return jobs

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection(split_endpoint(self.endpoint), timeout=3.0)
            sock.settimeout(RESERVE_TIMEOUT + 10.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            self._sock, self._reader = sock, reader
            tube = self.tube.encode()
            self._send(b"watch %s\r\n" % tube)
            if not self._line().startswith(b"WATCHING"):
                raise ProtocolError("watch refused")
            if self.tube != "default":
                self._send(b"ignore default\r\n")
                if not self._line().startswith(b"WATCHING"):
                    raise ProtocolError("ignore refused")
        except (OSError, ProtocolError) as e:
            self._close()
            self._backoff = min(5.0, self._backoff * 2 or 0.2)
            if self._backoff >= 5.0:
                logger.debug("beanstalkd %s still unreachable: %s", self.endpoint, e)
            else:
                logger.warning(
                    "beanstalkd %s unreachable (retry in %.1fs): %s",
                    self.endpoint,
                    self._backoff,
                    e,
                )
            self.stop_event.wait(self._backoff)
            self._ops.clear()  # nothing reserved on any connection: nothing to settle
            return False
        if self._backoff:
            logger.info("beanstalkd %s: connected again", self.endpoint)
        self._backoff = 0.0
        return True

    def _lost(self, e: BaseException) -> None:
        logger.warning(
            "beanstalkd %s: connection lost (%s); %d reserved job(s) go back",
            self.endpoint,
            e or type(e).__name__,
            len(self.held),
        )
        self._close()

    def _close(self) -> None:
        sock, reader = self._sock, self._reader
        self._sock = self._reader = None
        for closable in (reader, sock):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
        self.held.clear()
        self._mine.clear()
        self.gen += 1
