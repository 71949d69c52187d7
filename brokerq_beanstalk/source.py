"""``BeanstalkSource``: replicated dq jobs as a brokerq Source, run once thanks to Redis.

Per batch of copies reserved by one node thread (one pipelined send, see ``_node``):

1. parse each (brokerq envelope or go-queue body; neither → buried);
2. due more than ``HOLD_MAX`` from now → release it with a whole-second delay (no Redis);
3. another copy of the same job is registered here → keep this copy reserved beside it
   (brokerq_beanstalk.replicas), no Redis;
4. claim the rest in Redis (one round trip for the batch, also reading done marks, attempts
   and claim counts): done → delete the copies; claimed by another worker → release them for
   ``claim_ttl``; Redis down → release them and pause reserving with backoff (no handler ever
   runs unguarded);
5. hand the job to the core ``Dispatcher``: it waits there until its exact due time, then
   goes out lowest priority first (the job's own, from its envelope).

Flow control: nodes reserve in batches, up to ``prefetch`` jobs per node (every node
reserves its own copy of each job, so a round brings in at most ``prefetch`` distinct jobs
per node). A job that is due but that no thread of this process takes within
``GIVE_BACK_AFTER`` seconds is given back (claim dropped, copy released) so another process
runs it, and from then on this process reserves only while a thread waits for work: a busy
process never sits on due jobs (no head-of-line blocking).

Settling carries out the Worker's outcome, never another: ``ack`` marks done then deletes
the copy; ``retry`` records attempt + due time, drops the claim and releases the copy (at
the job's own priority); ``dead`` marks dead with the failure's type and traceback and buries
the copy; ``release`` gives the claim back (not counted as an attempt) and releases the copy.
When Redis is down at settle time the copy stays reserved and the record waits in
``Claims`` until Redis answers (the handler never runs again for it).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from brokerq.broker import Delivery, Source
from brokerq.dispatch import Dispatcher
from brokerq.errors import ConnectionFailed, DecodeError
from brokerq.message import Message
from brokerq.outcome import Failure
from brokerq_beanstalk import codec
from brokerq_beanstalk._node import Handle, Node
from brokerq_beanstalk.claims import Claims, RedisPause
from brokerq_beanstalk.config import Beanstalk
from brokerq_beanstalk.guard import Claimed, Guard
from brokerq_beanstalk.replicas import Replicas
from brokerq_beanstalk.settling import Settling

logger = logging.getLogger(__name__)

HOLD_MAX = codec.HOLD + 2.0  # a copy due within this is held in memory, not released again
GIVE_BACK_AFTER = 0.3  # seconds a due job may wait here with no thread free to start it


class BeanstalkSource(Settling, Source):
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
        self.priority = priority
        self.prefetch = max(1, prefetch)
        self.max_held = max_held
        self._token = uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self._ready: Dispatcher[Delivery[Handle]] = Dispatcher(
            self.prefetch * len(beanstalks) + max_held, priority_of=lambda d: d.handle.priority
        )
        self._replicas = Replicas()
        self._claims = Claims(guard, claim_ttl, self._give_back_idle)
        self._nodes = [Node(self, b, ttr, priority) for b in beanstalks]
        # each node thread reserves its own copy of every job, so a round brings in at most
        # ``prefetch`` distinct jobs per node: the budget is per node
        self._budget = self.prefetch * len(self._nodes)
        self._lock = threading.Lock()
        self._takers = 0  # threads waiting in receive
        self._claiming = 0  # jobs registered by node threads, not yet in the dispatcher
        self._want_room = False
        self._gave_back = False  # due jobs were given back since a thread last asked for one
        self._last_taker = time.monotonic()  # when a thread last asked for a job
        self._stopping = threading.Event()
        self._redis = RedisPause()
        self._started = False
        self._closed = False

    # -- Source -----------------------------------------------------------------------------
    def receive(self, timeout: float) -> Delivery[Any] | None:
        self._start()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                self._takers += 1
                self._gave_back = False
                self._last_taker = time.monotonic()
                wake, self._want_room = self._want_room, False
            if wake:
                for node in self._nodes:
                    node.wake.set()
            try:
                delivery = self._ready.get(max(0.0, deadline - time.monotonic()))
            finally:
                with self._lock:
                    self._takers -= 1
            if delivery is None:
                return None
            if not (delivery.handle.held and self._revoked(delivery)):
                return delivery

    def ack(self, delivery: Delivery[Any]) -> None:
        h: Handle = delivery.handle
        self._settle(
            delivery, lambda: self.guard.mark_done_shared(delivery.message.id, h.token), "delete"
        )

    def retry(self, delivery: Delivery[Any], delay: float, error: Failure) -> None:
        h: Handle = delivery.handle
        msg = delivery.message
        due = time.time() + max(0.0, delay)
        self._settle(
            delivery,
            lambda: self.guard.schedule_retry(
                msg.id, h.token, msg.attempt + 1, due, str(Failure.parse(error))
            ),
            "release",
            codec.beanstalk_delay(delay),
            "release",
        )

    def dead(self, delivery: Delivery[Any], error: Failure) -> None:
        h: Handle = delivery.handle
        msg = delivery.message
        failure = Failure.parse(error)
        self._settle(
            delivery,
            lambda: self.guard.record_dead(
                msg.id,
                h.token,
                str(failure),
                h.ref,
                msg.attempt,
                error_type=failure.type,
                traceback=failure.traceback,
                tube=h.node.tube,
            ),
            "bury",
            0,
            "delete",
        )

    def release(self, delivery: Delivery[Any]) -> None:
        h: Handle = delivery.handle
        self._claims.remove(h.token)
        try:
            self.guard.give_back(delivery.message.id, h.token)
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
            for d in self._ready.close():
                self.release(d)
            for node in self._nodes:
                node.stop_event.set()
            self._claims.stop()
            for node in self._nodes:
                node.join(10)
            self._claims.flush()
            if n := self._claims.pending:
                logger.error("%d settlement(s) not recorded (Redis down): they run again", n)
        self.guard.close()

    # -- state ------------------------------------------------------------------------------
    def nodes(self) -> dict[str, str]:
        """Each node's endpoint → ``up``, or why it is down (reconnecting in the background)."""
        return {n.endpoint: "up" if n.up else f"down: {n.error}" for n in self._nodes}

    def on_node_state(self, node: Node) -> None:
        up, total = sum(x.up for x in self._nodes), len(self._nodes)
        if node.up:
            logger.info("beanstalkd %s up: consuming from %d of %d nodes", node.endpoint, up, total)
        else:
            logger.warning(
                "beanstalkd %s down: consuming from %d of %d nodes, reconnecting in the background",
                node.endpoint,
                up,
                total,
            )

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        for node in self._nodes:
            node.start()
        self._claims.start()

    def reserve_room(self) -> int:
        """How many copies a node thread may reserve now: none while Redis is down, while the
        buffer is more than half full (batches), or, once due jobs had to be given back,
        while every thread is busy (other processes take the jobs); else up to ``prefetch``
        per node minus what is held."""
        if self._stopping.is_set() or self._redis.paused():
            return 0
        ready, delayed = self._ready.counts()
        ready += self._claiming
        room = self._budget - ready
        if self._gave_back and self._takers <= ready:
            room = 0  # jobs had to be given back: reserve only for threads that wait
        if room <= 0 or (ready and room < self._budget // 2) or delayed >= self.max_held:
            # reserve in batches (half the budget), or at once when nothing is ready
            self._want_room = True  # the next thread that waits in receive wakes the nodes
            return 0
        return room

    # -- node thread callback ---------------------------------------------------------------
    def on_reserved(self, node: Node, jobs: list[tuple[int, bytes]]) -> None:
        """Decide what to do with freshly reserved copies (runs on ``node``'s thread)."""
        now = time.time()
        ask: list[tuple[int, Message, str]] = []
        replicas = self._replicas
        for job_id, body in jobs:
            if replicas.join_body(body, Handle(node, node.gen, job_id, "", self.priority)):
                continue  # priority fixed below: copies follow the registered job's own
            try:
                msg = codec.decode(body)
            except DecodeError as e:
                logger.error("beanstalkd %s job %d buried: %s", node.endpoint, job_id, e)
                node.settle("bury", job_id)
                continue
            prio = codec.priority_of(msg, self.priority)
            if msg.not_before is not None and msg.not_before - now > HOLD_MAX:
                node.settle("release", job_id, codec.beanstalk_delay(msg.not_before - now), prio)
                continue
            token = f"{self._token}:{next(self._seq)}"
            if not replicas.register(msg.id, body, token):
                replicas.join(msg.id, Handle(node, node.gen, job_id, "", prio))
                continue
            ask.append((job_id, msg, token))
        if not ask:
            return
        with self._lock:
            self._claiming += len(ask)
        try:
            self._claim(node, ask)
        finally:
            with self._lock:
                self._claiming -= len(ask)

    def _claim(self, node: Node, ask: list[tuple[int, Message, str]]) -> None:
        try:
            got = self.guard.acquire_many(
                [(msg.id, token) for _, msg, token in ask],
                [msg.headers.get(codec.GEN, "") for _, msg, _ in ask],
            )
        except ConnectionFailed as e:
            self._redis.failed(e)
            for job_id, msg, token in ask:
                self._not_ours(node, job_id, msg, token, "release", 1)
            return
        self._redis.ok()
        for (job_id, msg, token), claimed in zip(ask, got, strict=True):
            self._claimed(node, job_id, msg, token, claimed)

    def _not_ours(
        self, node: Node, job_id: int, msg: Message, token: str, op: str, delay: int
    ) -> None:
        """Drop a tentative registration: ``op`` this copy and every copy held beside it."""
        prio = codec.priority_of(msg, self.priority)
        node.settle(op, job_id, delay, prio)
        for c in self._replicas.drop(msg.id, token):
            c.priority = prio
            c.node.submit(op, c, delay)

    def _claimed(self, node: Node, job_id: int, msg: Message, token: str, got: Claimed) -> None:
        if got.done is not None:  # done, dead, revoked or stale: every copy goes
            self._not_ours(node, job_id, msg, token, "delete", 0)
            return
        if not got.claimed:  # running elsewhere: look again when that claim would have expired
            self._not_ours(node, job_id, msg, token, "release", max(1, math.ceil(self.claim_ttl)))
            return
        due = max(msg.not_before or 0.0, got.due or 0.0) or None
        if got.attempt > msg.attempt or due != msg.not_before:  # retries/claims in Redis
            msg = replace(msg, attempt=max(msg.attempt, got.attempt), not_before=due)
        now = time.time()
        if due is not None and due - now > HOLD_MAX:  # a retry far ahead
            self._drop_claim(msg.id, token)
            self._not_ours(node, job_id, msg, token, "release", codec.beanstalk_delay(due - now))
            return
        held = due is not None and due > now
        handle = Handle(
            node,
            node.gen,
            job_id,
            token,
            codec.priority_of(msg, self.priority),
            due if held and due is not None else now,
            held,
        )
        delivery = Delivery(msg, handle)
        logger.debug(
            "job %s claimed: attempt %d, due in %.3fs", msg.id, msg.attempt, handle.ready_at - now
        )
        self._claims.add(token, delivery)
        self._ready.put(delivery, due if held else None)

    def _drop_claim(self, job_id: str, token: str) -> None:
        try:
            self.guard.give_back(job_id, token)
        except ConnectionFailed as e:  # the claim expires by itself
            logger.warning("job %s: could not drop claim: %s", job_id, e)

    # -- hand-out checks --------------------------------------------------------------------
    def _revoked(self, delivery: Delivery[Handle]) -> bool:
        """A job that waited here for its time: revoked meanwhile? Then delete its copies."""
        try:
            revoked = self.guard.is_done(delivery.message.id)
        except ConnectionFailed:
            return False  # we hold a valid claim; run it
        if revoked:
            self._claims.remove(delivery.handle.token)
            self._submit(delivery, "delete", 0, "delete")
        return revoked

    def _give_back_idle(self) -> None:
        """Give back due jobs that no thread of this process took within GIVE_BACK_AFTER."""
        if self._takers or self._stopping.is_set():
            return
        if time.monotonic() - self._last_taker < GIVE_BACK_AFTER:
            return  # threads come back for work: they are busy, not stuck
        limit = time.time() - GIVE_BACK_AFTER
        next_due = self._ready.next_due()  # due items are promoted only when a thread asks
        if not self._ready.counts()[0] and (next_due is None or next_due > limit):
            return
        for d in self._ready.remove(lambda d: d.handle.ready_at <= limit):
            logger.debug("job %s: no thread free to start it, given back", d.message.id)
            self._gave_back = True
            self.release(d)
