"""``BeanstalkSource``: replicated dq jobs as a brokerq Source, run once thanks to Redis.

Per batch of copies reserved by one node thread (one pipelined send, see ``_node``):

1. parse each (brokerq envelope or go-queue body; neither → buried);
2. due more than ``HOLD_MAX`` from now → release it with a whole-second delay (no Redis);
3. another copy of the same job is registered here (claimed, or being claimed) → keep this
   copy reserved (touched) beside it, no Redis: once that job's outcome is recorded in Redis
   its copies follow (deleted after the done mark, released with the retry delay, ...);
4. claim the rest in Redis (one round trip for the batch, also reading done marks and attempts):
   done → delete the copies; claimed by another worker → release them for ``claim_ttl``
   (if that worker dies its claim expires and a copy runs); Redis down → release them,
   pause reserving with backoff (no handler ever runs unguarded);
5. not yet due → hold it (claim kept, TTR touched) in a timer heap until exactly its time;
   then hand it out through the ready buffer that ``receive`` reads.

Settling: ``ack`` marks done (concurrent acks share a Redis round trip, each returns once its
mark is recorded) then deletes the copy; ``retry`` records attempt + due time in
Redis, drops the claim and releases the copy (any replica may run the next attempt);
``dead`` marks dead, records the error, buries the copy; ``release`` drops the claim and
releases the copy. When Redis is down at settle time the copy stays reserved (touched) and
the Redis step is retried until it works. Claims are renewed while jobs are held or running.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from brokerq.broker import Delivery, Source
from brokerq.errors import ConnectionFailed, DecodeError
from brokerq.message import Message
from brokerq_beanstalk import codec
from brokerq_beanstalk._node import Handle, Node
from brokerq_beanstalk.config import Beanstalk
from brokerq_beanstalk.guard import Claimed, Guard
from brokerq_beanstalk.producer import HOLD, beanstalk_delay

logger = logging.getLogger(__name__)

HOLD_MAX = HOLD + 2.0  # a copy due within this is held in memory, not released again


class BeanstalkSource(Source):
    """Receives from every node at once; ack / retry / dead / release from any thread."""

    def __init__(
        self,
        beanstalks: Sequence[Beanstalk],
        guard: Guard,
        *,
        ttr: float = 5.0,
        priority: int = 2,
        claim_ttl: float = 15.0,
        prefetch: int = 8,
        max_held: int = 1024,
    ) -> None:
        self.guard = guard
        self.claim_ttl = claim_ttl
        self.prefetch = max(1, prefetch)
        self._low = max(1, self.prefetch // 2)
        self.max_held = max_held
        self._token = uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self._nodes = [Node(self, b, ttr, priority) for b in beanstalks]
        self._ready: queue.Queue[Delivery[Handle]] = queue.Queue()
        self._heap: list[tuple[float, int, Delivery[Handle]]] = []
        self._cond = threading.Condition()
        self._claims: dict[str, Delivery[Handle]] = {}  # token → delivery, claims to renew
        # ids claimed here → their other copies, kept reserved until the job is settled
        self._local: dict[str, list[Handle]] = {}
        self._bodies: dict[bytes, str] = {}  # body of a job in _local → its id (no decode)
        self._body_of: dict[str, bytes] = {}  # claim token → body key in _bodies
        self._pending: list[tuple[Delivery[Handle], Callable[[], None], str, int, str]] = []
        self._want_room = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._redis_pause_until = 0.0
        self._redis_backoff = 0.0
        self._started = False
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- Source -----------------------------------------------------------------------------
    def receive(self, timeout: float) -> Delivery[Any] | None:
        self._start()
        try:
            delivery = self._ready.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if self._want_room and self.prefetch - self._ready.qsize() >= self._low:
            self._want_room = False
            for node in self._nodes:
                node.wake.set()
        return delivery

    def ack(self, delivery: Delivery[Any]) -> None:
        h: Handle = delivery.handle
        self._settle(
            delivery, lambda: self.guard.mark_done_shared(delivery.message.id, h.token), "delete"
        )

    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        h: Handle = delivery.handle
        msg = delivery.message
        due = time.time() + max(0.0, delay)
        logger.info(
            "job %s attempt %d failed, retry in %.3fs: %s", msg.id, msg.attempt, delay, error
        )
        self._settle(
            delivery,
            lambda: self.guard.schedule_retry(msg.id, h.token, msg.attempt + 1, due),
            "release",
            beanstalk_delay(delay),
            "release",
        )

    def dead(self, delivery: Delivery[Any], error: str) -> None:
        h: Handle = delivery.handle
        msg = delivery.message
        logger.warning("job %s dead after attempt %d: %s", msg.id, msg.attempt, error)
        self._settle(
            delivery,
            lambda: self.guard.record_dead(msg.id, h.token, error, h.ref, msg.attempt),
            "bury",
            0,
            "delete",
        )

    def release(self, delivery: Delivery[Any]) -> None:
        h: Handle = delivery.handle
        self._unclaim(delivery)
        try:
            self.guard.release(delivery.message.id, h.token)
        except ConnectionFailed as e:  # the claim expires by itself
            logger.warning("job %s: could not drop claim: %s", delivery.message.id, e)
        self._submit(delivery, "release", 0, "release")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started:
            self._stopping.set()
            with self._cond:
                self._cond.notify_all()
                held = [d for _, _, d in self._heap]
                self._heap.clear()
            while True:
                try:
                    held.append(self._ready.get_nowait())
                except queue.Empty:
                    break
            for d in held:
                self.release(d)
            for node in self._nodes:
                node.stop_event.set()
            for t in self._threads:
                t.join(10)
            self._flush_pending()
            if self._pending:
                logger.error(
                    "%d job(s) settled while Redis was down were not recorded; they will run again",
                    len(self._pending),
                )
        self.guard.close()

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self._threads = [*self._nodes]
            self._threads.append(
                threading.Thread(target=self._timer, name="brokerq-dq-timer", daemon=True)
            )
            self._threads.append(
                threading.Thread(target=self._keepalive, name="brokerq-dq-keepalive", daemon=True)
            )
            for t in self._threads:
                t.start()

    def reserve_room(self) -> int:
        """How many copies a node thread may reserve now (0 when full or Redis is down)."""
        if self._stopping.is_set() or time.monotonic() < self._redis_pause_until:
            return 0
        room = self.prefetch - self._ready.qsize()
        if room < self._low or len(self._heap) >= self.max_held:
            # reserve in batches, not one by one: wait until half the buffer is free
            self._want_room = True
            return 0
        return room

    def _redis_failed(self, e: Exception) -> None:
        with self._lock:
            self._redis_backoff = min(5.0, self._redis_backoff * 2 or 0.25)
            self._redis_pause_until = time.monotonic() + self._redis_backoff
        logger.warning("redis unavailable, consumption paused %.2fs: %s", self._redis_backoff, e)

    def _redis_ok(self) -> None:
        if self._redis_backoff:
            with self._lock:
                self._redis_backoff = 0.0
            logger.info("redis available again, consumption resumes")

    # -- node thread callback ---------------------------------------------------------------
    def on_reserved(self, node: Node, jobs: list[tuple[int, bytes]]) -> None:
        """Decide what to do with freshly reserved copies (runs on ``node``'s thread).

        The first copy of a job seen here registers the job (tentatively, before Redis
        answers); copies seen after it, from any node, are held beside it and follow its
        fate, so one consumer asks Redis once per job.
        """
        now = time.time()
        ask: list[tuple[int, Message, str]] = []
        bodies = self._bodies
        for job_id, body in jobs:
            known = bodies.get(body)  # the copies of one job carry the same bytes
            if known is not None and self._shadow(known, node, job_id):
                continue
            try:
                msg = codec.decode(body)
            except DecodeError as e:
                logger.error("beanstalkd %s job %d buried: %s", node.endpoint, job_id, e)
                node.settle("bury", job_id)
                continue
            if msg.not_before is not None and msg.not_before - now > HOLD_MAX:
                node.settle("release", job_id, beanstalk_delay(msg.not_before - now))
                continue
            token = f"{self._token}:{next(self._seq)}"
            with self._lock:
                copies = self._local.get(msg.id)
                if copies is not None:
                    copies.append(Handle(node, node.gen, job_id, ""))
                    continue
                self._local[msg.id] = []
                bodies[body] = msg.id
                self._body_of[token] = body
            ask.append((job_id, msg, token))
        if not ask:
            return
        try:
            got = self.guard.acquire_many([(msg.id, token) for _, msg, token in ask])
        except ConnectionFailed as e:
            self._redis_failed(e)
            for job_id, msg, token in ask:
                self._not_ours(node, job_id, msg.id, token, "release", 1)
            return
        self._redis_ok()
        for (job_id, msg, token), claimed in zip(ask, got, strict=True):
            self._claimed(node, job_id, msg, token, claimed)

    def _shadow(self, job_id: str, node: Node, copy: int) -> bool:
        """Keep ``copy`` reserved beside a copy of the same job registered here, if any."""
        with self._lock:
            copies = self._local.get(job_id)
            if copies is None:
                return False
            copies.append(Handle(node, node.gen, copy, ""))
            return True

    def _not_ours(
        self, node: Node, job_id: int, msg_id: str, token: str, op: str, delay: int
    ) -> None:
        """Drop a tentative registration: ``op`` this copy and every copy held beside it."""
        with self._lock:
            copies = self._local.pop(msg_id, None) or []
            body = self._body_of.pop(token, None)
            if body is not None:
                self._bodies.pop(body, None)
        node.settle(op, job_id, delay)
        for c in copies:
            c.node.submit(op, c, delay)

    def _claimed(self, node: Node, job_id: int, msg: Message, token: str, got: Claimed) -> None:
        if got.done is not None:  # done, dead or revoked: every copy goes
            self._not_ours(node, job_id, msg.id, token, "delete", 0)
            return
        if not got.claimed:  # running elsewhere: look again when that claim would have expired
            self._not_ours(
                node, job_id, msg.id, token, "release", max(1, math.ceil(self.claim_ttl))
            )
            return
        due = max(msg.not_before or 0.0, got.due or 0.0) or None
        if got.attempt > msg.attempt or due != msg.not_before:  # a retry recorded in Redis
            msg = replace(msg, attempt=max(msg.attempt, got.attempt), not_before=due)
        delivery = Delivery(msg, Handle(node, node.gen, job_id, token))
        if due is not None and due - time.time() > HOLD_MAX:  # a retry far ahead
            try:
                self.guard.release(msg.id, token)
            except ConnectionFailed as e:  # the claim expires by itself
                logger.warning("job %s: could not drop claim: %s", msg.id, e)
            self._not_ours(
                node, job_id, msg.id, token, "release", beanstalk_delay(due - time.time())
            )
            return
        with self._lock:
            self._claims[token] = delivery
        if due is not None and due > time.time():
            with self._cond:
                heapq.heappush(self._heap, (due, next(self._seq), delivery))
                self._cond.notify()
        else:
            self._ready.put(delivery)

    # -- timer: hand held jobs out exactly when due -----------------------------------------
    def _timer(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                if not self._heap:
                    self._cond.wait(0.5)
                    continue
                wait = self._heap[0][0] - time.time()
                if wait > 0:
                    self._cond.wait(min(wait, 0.5))
                    continue
                _, _, delivery = heapq.heappop(self._heap)
            self._hand_out(delivery)

    def _hand_out(self, delivery: Delivery[Handle]) -> None:
        try:
            revoked = self.guard.is_done(delivery.message.id)
        except ConnectionFailed:
            revoked = False  # we hold a valid claim; run it
        if revoked:
            self._unclaim(delivery)
            self._submit(delivery, "delete", 0, "delete")
        else:
            self._ready.put(delivery)

    # -- settling ---------------------------------------------------------------------------
    def _unclaim(self, delivery: Delivery[Handle]) -> None:
        """Stop renewing the claim (the Redis record that follows drops it)."""
        with self._lock:
            self._claims.pop(delivery.handle.token, None)

    def _copies(self, delivery: Delivery[Handle]) -> list[Handle]:
        """Unregister the job; return its other copies held beside it.

        Called only once its outcome is in Redis: until then copies reserved here keep
        joining it instead of asking Redis (where the claim still looks taken).
        """
        with self._lock:
            body = self._body_of.pop(delivery.handle.token, None)
            if body is None:
                return []
            self._bodies.pop(body, None)
            return self._local.pop(delivery.message.id, None) or []

    def _settle(
        self,
        delivery: Delivery[Handle],
        record: Callable[[], None],
        op: str,
        delay: int = 0,
        copies_op: str = "delete",
    ) -> None:
        """Record the outcome in Redis, then ``op`` the copy and ``copies_op`` its other copies.

        Held copies are only touched by the node threads, never settled, until the record
        is in Redis: a done mark always precedes every delete.
        """
        self._unclaim(delivery)  # no more renewals: the record below drops the claim
        try:
            record()
        except ConnectionFailed as e:
            logger.warning(
                "job %s: redis down, %s kept reserved until it can be recorded: %s",
                delivery.message.id,
                op,
                e,
            )
            with self._lock:
                self._pending.append((delivery, record, op, delay, copies_op))
            return
        self._submit(delivery, op, delay, copies_op)

    def _submit(self, delivery: Delivery[Handle], op: str, delay: int, copies_op: str) -> None:
        h = delivery.handle
        h.node.submit(op, h, delay)
        for c in self._copies(delivery):
            c.node.submit(copies_op, c, delay if copies_op == "release" else 0)

    def _flush_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for i, (delivery, record, op, delay, copies_op) in enumerate(pending):
            try:
                record()
            except ConnectionFailed:
                with self._lock:
                    self._pending[:0] = pending[i:]
                return
            self._submit(delivery, op, delay, copies_op)
        if pending:
            logger.info("recorded %d settlement(s) delayed by a redis outage", len(pending))

    def _keepalive(self) -> None:
        tick = min(1.0, self.claim_ttl / 3)
        while not self._stopping.wait(tick):
            if self._pending:
                self._flush_pending()
            with self._lock:
                claims = [(d.message.id, token) for token, d in self._claims.items()]
            try:
                kept = self.guard.renew(claims)
            except ConnectionFailed as e:
                logger.warning("could not renew %d claim(s): %s", len(claims), e)
                continue
            for (job_id, token), ok in zip(claims, kept, strict=False):
                if not ok and token in self._claims:
                    logger.warning("job %s: claim expired while held; it may run twice", job_id)
