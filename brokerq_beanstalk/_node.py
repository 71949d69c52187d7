"""One beanstalkd node on the consumer side: a thread that owns the node's connection.

greenstalk is not thread-safe and beanstalkd ties a reservation to the connection that made
it, so every command on a reserved job (delete, release, bury, touch) runs on this thread:
worker threads queue settle operations, the loop runs them between short reserves (1 s), and
touches every job it holds so its TTR never runs out while it waits or its handler runs.
A lost connection bumps ``gen``: operations on jobs reserved by an older connection are
dropped (beanstalkd has already put those jobs back).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import greenstalk

from brokerq_beanstalk.config import Beanstalk, split_endpoint

if TYPE_CHECKING:
    from brokerq_beanstalk.source import BeanstalkSource

logger = logging.getLogger(__name__)

RESERVE_TIMEOUT = 1  # seconds; bounds how long a queued settle operation waits


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
        self.client: greenstalk.Client[bytes] | None = None
        self.ops: queue.SimpleQueue[tuple[str, Handle, int]] = queue.SimpleQueue()
        self.held: dict[int, float] = {}  # job id → last touch (monotonic), this connection
        self.stop_event = threading.Event()
        self._backoff = 0.0

    # -- called from other threads ----------------------------------------------------------
    def submit(self, op: str, handle: Handle, delay: int = 0) -> None:
        """Queue ``delete`` / ``release`` / ``bury`` of a reserved copy."""
        self.ops.put((op, handle, delay))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not (self.stop_event.is_set() and self.ops.empty()):
                if self.client is None and not self._connect():
                    continue
                try:
                    self._step()
                except (OSError, greenstalk.Error) as e:
                    self._lost(e)
        finally:
            self._close()

    def _step(self) -> None:
        self._run_ops()
        self._touch_due()
        if self.stop_event.is_set():
            return
        if not self.source.may_reserve():
            self._wait_op(0.05)
            return
        assert self.client is not None
        try:
            job = self.client.reserve(timeout=0 if not self.ops.empty() else RESERVE_TIMEOUT)
        except greenstalk.TimedOutError:
            return
        except greenstalk.DeadlineSoonError:
            self._touch_due(force=True)
            return
        self.held[job.id] = time.monotonic()
        self.source.on_reserved(self, job.id, job.body)

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection(split_endpoint(self.endpoint), timeout=3.0)
            sock.settimeout(RESERVE_TIMEOUT + 10.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client = greenstalk.Client(sock, encoding=None, use=self.tube, watch=self.tube)
        except (OSError, greenstalk.Error) as e:
            self.client = None
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
            self._wait_op(self._backoff)
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
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
        self.client = None
        self.held.clear()
        self.gen += 1

    def _wait_op(self, timeout: float) -> None:
        """Sleep up to ``timeout``, waking to run a settle operation if one comes."""
        try:
            item = self.ops.get(timeout=timeout)
        except queue.Empty:
            return
        self._apply(*item)

    def _run_ops(self) -> None:
        while True:
            try:
                item = self.ops.get_nowait()
            except queue.Empty:
                return
            self._apply(*item)

    def _apply(self, op: str, handle: Handle, delay: int) -> None:
        if handle.gen != self.gen or self.client is None:
            return  # reserved on a lost connection: beanstalkd already put it back
        self.settle(op, handle.job_id, delay)

    def settle(self, op: str, job_id: int, delay: int = 0) -> None:
        """Run one settle command now (this thread only)."""
        assert self.client is not None
        self.held.pop(job_id, None)
        job: greenstalk.Job[bytes] = greenstalk.Job(job_id, b"")
        try:
            if op == "delete":
                self.client.delete(job)
            elif op == "release":
                self.client.release(job, priority=self.priority, delay=delay)
            elif op == "bury":
                self.client.bury(job, priority=self.priority)
            else:
                raise ValueError(op)
        except greenstalk.NotFoundError:
            logger.debug(
                "beanstalkd %s: %s of job %d: not reserved any more", self.endpoint, op, job_id
            )

    def _touch_due(self, force: bool = False) -> None:
        if not self.held or self.client is None:
            return
        now = time.monotonic()
        for job_id, last in list(self.held.items()):
            if force or now - last >= self.touch_every:
                try:
                    self.client.touch(greenstalk.Job(job_id, b""))
                    self.held[job_id] = now
                except greenstalk.NotFoundError:
                    self.held.pop(job_id, None)
