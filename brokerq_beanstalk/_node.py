"""One beanstalkd node on the consumer side: a thread that owns the node's connection.

beanstalkd ties a reservation to the connection that made it, so every command on a reserved
job (delete, release, bury, touch) runs on this thread's connection. The thread pipelines:
each turn it writes, in one send, every settle operation queued since the last turn, the
touches that are due and a batch of ``reserve-with-timeout 0``, then reads all the answers
(brokerq_beanstalk.protocol parses them). The copies reserved are handed to the node's
``NodeSink`` (the source) in one call; what the sink decides for them (delete, release,
bury) rides on the next send. The node knows its sink only through that small Protocol.

It blocks in ``reserve-with-timeout 1`` only while it holds no reserved job (so no settle
operation can be waiting for this connection); while it holds jobs and the tube is empty it
polls (10-100 ms). Every held job is touched so its TTR never runs out while it waits or its
handler runs. A lost connection bumps ``gen``: operations on jobs reserved by an older
connection are dropped (beanstalkd has already put those jobs back). A node that cannot be
reached is retried in the background (backoff up to 5 s); ``up`` and ``error`` say how it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.config import Beanstalk, split_endpoint
from brokerq_beanstalk.protocol import SETTLED, Conn

logger = logging.getLogger(__name__)

RESERVE_TIMEOUT = 1  # seconds a node thread holding no job blocks in reserve
BATCH = 32  # reserves pipelined per turn
POLL_MIN, POLL_MAX = 0.01, 0.1  # polling while jobs are held and the tube is empty


class NodeSink(Protocol):
    """What a node thread needs from the source it feeds."""

    def reserve_room(self) -> int:
        """How many copies the node may reserve now (0: none)."""

    def on_reserved(self, node: Node, jobs: list[tuple[int, bytes]]) -> None:
        """Decide about copies just reserved by ``node`` (runs on the node's thread)."""

    def on_node_state(self, node: Node) -> None:
        """``node.up`` changed."""


@dataclass(slots=True, eq=False)
class Handle:
    """The backend's handle on a delivery: which node, which connection, which job copy,
    the job's own priority, and since when (unix seconds) it may be handed out."""

    node: Node
    gen: int
    job_id: int
    token: str
    priority: int
    ready_at: float = 0.0
    held: bool = False  # waited here for its due time (check the revoke mark before running)

    @property
    def ref(self) -> str:
        return f"{self.node.endpoint}/{self.job_id}"


class Node(threading.Thread):
    """Reserve loop and settle operations for one node."""

    def __init__(self, sink: NodeSink, conf: Beanstalk, ttr: float, priority: int) -> None:
        super().__init__(name=f"brokerq-dq-{conf.endpoint}", daemon=True)
        self.sink = sink
        self.endpoint = conf.endpoint
        self.tube = conf.tube
        self.priority = priority  # for copies whose own priority is unknown (undecodable)
        self.touch_every = ttr / 3
        self.gen = 0
        self.up = False
        self.error = "not connected yet"
        self.held: dict[int, float] = {}  # job id → last touch (monotonic), this connection
        self.stop_event = threading.Event()
        self.wake = threading.Event()  # set when an op is queued or the ready buffer has room
        self.waiting = False  # this thread is (about to be) waiting on ``wake``
        self._ops: deque[tuple[str, Handle, int]] = deque()  # from other threads
        self._mine: list[tuple[str, int, int, int]] = []  # decided on this thread, next send
        self._conn: Conn | None = None
        self._backoff = 0.0
        self._poll = POLL_MIN
        self._idle = False  # the last reserve found nothing: reserve one at a time

    # -- called from other threads ----------------------------------------------------------
    def submit(self, op: str, handle: Handle, delay: int = 0) -> None:
        """Queue ``delete`` / ``release`` / ``bury`` of a reserved copy (at its priority)."""
        self._ops.append((op, handle, delay))
        if self.waiting:
            self.wake.set()

    # -- called from this thread (the sink's ``on_reserved``) -------------------------------
    def settle(self, op: str, job_id: int, delay: int = 0, priority: int | None = None) -> None:
        """Queue ``op`` on a copy reserved by the current connection; sent on the next turn."""
        self.held.pop(job_id, None)
        self._mine.append((op, job_id, delay, self.priority if priority is None else priority))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not (self.stop_event.is_set() and not self._ops and not self._mine):
                if self._conn is None and not self._connect():
                    continue
                try:
                    self._turn()
                except ConnectionFailed as e:
                    self._lost(e)
        finally:
            self._close()

    def _turn(self) -> None:
        conn = self._conn
        assert conn is not None
        cmds: list[bytes] = []
        expect: list[tuple[bytes, int]] = []
        self._collect_ops(cmds, expect)
        self._collect_touches(cmds, expect)
        want = 0
        if not self.stop_event.is_set():
            want = min(1 if self._idle else BATCH, self.sink.reserve_room())
        if want == 0 and not cmds:
            self._wait(0.05 if self.stop_event.is_set() else 0.5)
            return
        if want and self._idle and not cmds and not self.held:
            # nothing of ours is reserved, so no settle op can wait for us: block
            cmds.append(b"reserve-with-timeout %d\r\n" % RESERVE_TIMEOUT)
        else:
            cmds.extend([b"reserve-with-timeout 0\r\n"] * want)
        conn.send(b"".join(cmds))
        for op, job_id in expect:
            self._read_settled(conn, op, job_id)
        jobs = self._read_reserved(conn, want)
        if jobs:
            self._idle = False
            self._poll = POLL_MIN
            self.sink.on_reserved(self, jobs)
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
            self.settle(op, handle.job_id, delay, handle.priority)
        mine, self._mine = self._mine, []
        for op, job_id, delay, prio in mine:
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

    # -- answers ----------------------------------------------------------------------------
    def _read_settled(self, conn: Conn, op: bytes, job_id: int) -> None:
        parts = conn.line()
        if parts[0] in SETTLED[op]:
            return
        if parts[0] == b"NOT_FOUND":
            self.held.pop(job_id, None)
            logger.debug(
                "beanstalkd %s: %s of job %d: not reserved any more",
                self.endpoint,
                op.decode(),
                job_id,
            )
            return
        raise conn.unexpected(f"{op.decode()} {job_id}", parts)

    def _read_reserved(self, conn: Conn, n: int) -> list[tuple[int, bytes]]:
        jobs: list[tuple[int, bytes]] = []
        deadline_soon = False
        now = time.monotonic()
        for _ in range(n):
            parts = conn.line()
            status = parts[0]
            if status == b"RESERVED" and len(parts) == 3:
                job_id = int(parts[1])
                body = conn.body(int(parts[2]))
                self.held[job_id] = now
                jobs.append((job_id, body))
            elif status == b"DEADLINE_SOON":
                deadline_soon = True
            elif status != b"TIMED_OUT":
                raise conn.unexpected("reserve", parts)
        if deadline_soon:  # a held job's TTR is about to end: touch everything next turn
            for job_id in self.held:
                self.held[job_id] = 0.0
        return jobs

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> bool:
        try:
            conn = Conn(self.endpoint, split_endpoint(self.endpoint), 3.0)
            self._conn = conn
            conn.settimeout(RESERVE_TIMEOUT + 10.0)
            conn.watch_only(self.tube)
        except ConnectionFailed as e:
            self._close()
            self._backoff = min(5.0, self._backoff * 2 or 0.2)
            self.error = str(e)
            if self._backoff >= 5.0:
                logger.debug("beanstalkd %s still unreachable: %s", self.endpoint, e)
            else:
                logger.warning(
                    "beanstalkd %s unreachable, reconnecting in the background (next try in "
                    "%.1fs): %s",
                    self.endpoint,
                    self._backoff,
                    e,
                )
            self._set_up(False)
            self.stop_event.wait(self._backoff)
            self._ops.clear()  # nothing reserved on any connection: nothing to settle
            return False
        if self._backoff:
            logger.info("beanstalkd %s: connected again", self.endpoint)
        self._backoff = 0.0
        self.error = ""
        self._set_up(True)
        return True

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.sink.on_node_state(self)

    def _lost(self, e: BaseException) -> None:
        logger.warning(
            "beanstalkd %s: connection lost (%s); %d reserved job(s) go back",
            self.endpoint,
            e or type(e).__name__,
            len(self.held),
        )
        self.error = str(e)
        self._close()
        self._set_up(False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.held.clear()
        self._mine.clear()
        self.gen += 1
