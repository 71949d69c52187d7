"""The dq producer: one job, one id, the same bytes on ``replicas`` nodes, ``min_written`` acks.

One public face (go-queue ``dq.Producer``, also what ``BeanstalkBroker.producer()`` and
``delay_producer()`` return): ``push`` (an immediate job), ``delay`` / ``at`` (validated once
by the core template, brokerq.broker.DelayProducer, which calls ``schedule``), ``delay_many`` /
``at_many`` (many jobs per round trip, brokerq_beanstalk.batch_put) and ``revoke``.
``priority`` (lower runs first, 0..2**32-1; default the config's) travels in the job's
envelope (header ``brokerq-priority``) so retries, releases and dead-letter retries keep it;
``ttr`` (seconds, beanstalkd's time-to-run) is a keyword argument of ``schedule``. The
broker's middleware push hooks (tracing, metrics) run around every write.

The command is sent to every chosen node before any answer is read, so the writes overlap on
the wire without threads, and ``delay`` returns as soon as ``min_written`` nodes acked: the
slowest node's answer is read by a later call (brokerq_beanstalk.fanout), its copy recorded
then. Fewer than ``min_written`` acks → the copies written are deleted again and DeliveryError
names the failed nodes. Priorities, delays and TTRs beyond
beanstalkd's 32-bit fields are ValueErrors before anything is sent (``max_delay``).

``delay`` returns the job's brokerq id (the ``Message.id`` its handler sees). With a Redis
guard the copies' locations (``<endpoint>/<job id>``) are recorded there until the job's due
time has passed, so ``revoke`` from any process deletes every reachable copy and marks the id
revoked (copies it could not reach are deleted, not run, when a consumer reserves them);
``revoke`` says truthfully whether the job was found. It also takes the go-queue style
``<id>|<endpoint>/<job id>,...`` form.

``job_id=`` (caller-chosen, brokerq.enqueue) becomes the job's id; it is reserved in Redis
before any copy is written and released again when the write fails (brokerq_beanstalk.unique):
DuplicateJob while it is taken. It needs the Redis guard and brokerq bodies (a go-queue body
has no id to carry): NotSupported otherwise.

Time: beanstalkd delays are whole seconds, so a job is made ready up to two seconds early and
the consumer holds it until its exact ``not_before`` (a float in the envelope); with
``goqueue_compat`` the body is go-queue's and the delay is rounded *up* (Go consumers run what
they reserve at once, so it may be up to 1 s late, never early).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import ClassVar

from brokerq.batch_enqueue import EnqueueResult, ScheduledJob
from brokerq.broker import DelayProducer
from brokerq.broker import Producer as PushProducer
from brokerq.enqueue import check_job_id, unique_seconds
from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError, NotSupported
from brokerq.headers import with_options
from brokerq.middleware import MiddlewareChain
from brokerq_beanstalk import batch_put, codec
from brokerq_beanstalk._wire import NodeConn, pump_until
from brokerq_beanstalk.config import Beanstalk, DqConf
from brokerq_beanstalk.copies import CopiesLog, revoke
from brokerq_beanstalk.fanout import Tally, Write
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.protocol import check_put
from brokerq_beanstalk.unique import GEN, new_generation, reserve, unreserve

logger = logging.getLogger(__name__)

MAX_REMEMBERED = 100_000


def split_id(job_id: str) -> tuple[str, list[tuple[str, int]]]:
    """``id|ep/jid,ep/jid`` → ``(id, [(ep, jid), ...])``; ValueError when malformed."""
    bq_id, _, copies = job_id.partition("|")
    return bq_id, parse_copies(copies.split(","), job_id)


def parse_copies(copies: Sequence[str], what: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for copy in filter(None, copies):
        endpoint, _, jid = copy.rpartition("/")
        if not endpoint or not jid.isdigit():
            raise ValueError(f"invalid dq job id {what!r}")
        out.append((endpoint, int(jid)))
    return out


class Producer(DelayProducer, PushProducer):
    """go-queue ``dq.Producer``: replicated delayed jobs. Thread-safe (one write at a time)."""

    max_delay: ClassVar[float | None] = codec.MAX_DELAY

    def __init__(
        self,
        beanstalks: Sequence[Beanstalk],
        replicas: int = 3,
        min_written: int = 2,
        *,
        guard: Guard | None = None,
        ttr: float = 5.0,
        priority: int = 2,
        goqueue_compat: bool = False,
        timeout: float = 5.0,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        if not beanstalks:
            raise ValueError("at least one beanstalk node is needed")
        self.replicas = max(1, min(replicas, len(beanstalks)))
        self.min_written = max(1, min(min_written, self.replicas))
        self.ttr = max(1, math.ceil(ttr))
        check_put(priority, 0, self.ttr)
        self.priority = priority
        self.goqueue_compat = goqueue_compat
        self.middleware = middleware or MiddlewareChain()
        self.queue = beanstalks[0].tube
        self._guard = guard
        self._log = CopiesLog(guard) if guard is not None else None
        self._nodes = {b.endpoint: NodeConn(b.endpoint, b.tube, timeout) for b in beanstalks}
        self._all = list(self._nodes.values())
        self._timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self._copies: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()

    @classmethod
    def from_conf(
        cls, conf: DqConf, guard: Guard | None = None, middleware: MiddlewareChain | None = None
    ) -> Producer:
        return cls(
            conf.beanstalks,
            conf.replicas,
            conf.min_written,
            guard=guard,
            ttr=conf.ttr,
            priority=conf.priority,
            goqueue_compat=conf.goqueue_compat,
            middleware=middleware,
        )

    # -- Producer / DelayProducer -----------------------------------------------------------
    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        """An immediate job (no ``not_before``). Use ``delay(value, 0)`` for its id."""
        self._job(value, None, key, headers, job_id, unique_for, priority, None, time_limit, type)

    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
        ttr: float | None = None,
    ) -> str:
        """Run the job at unix time ``due`` (validated by ``delay`` / ``at``); return its id.

        ``ttr``: beanstalkd time-to-run in seconds (default the config's; the consumer
        touches the job while it runs, so this only bounds how fast a dead consumer's
        reservation comes back)."""
        return self._job(
            value, due, key, headers, job_id, unique_for, priority, ttr, time_limit, type
        )

    def _job(
        self,
        value: bytes | str,
        due: float | None,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        job_id: str | None,
        unique_for: float | timedelta | None,
        priority: int | None,
        ttr: float | None,
        time_limit: float | None,
        type: str | None,
    ) -> str:
        job_id = check_job_id(job_id)
        unique = unique_seconds(unique_for, job_id)
        if job_id is not None and (self._guard is None or self.goqueue_compat):
            why = "go-queue bodies carry no id" if self.goqueue_compat else "there is no guard"
            raise NotSupported(f"dq: job_id needs the Redis guard and brokerq bodies ({why})")
        pri = self.priority if priority is None else priority
        run = self.ttr if ttr is None else max(1, math.ceil(ttr))
        check_put(pri, 0, run)
        headers = with_options(headers, time_limit=time_limit, type=type)
        if priority is not None:
            headers = {**(headers or {}), codec.PRIORITY: str(priority)}
        gen = new_generation() if job_id is not None else ""
        chain = self.middleware
        if not chain.push_hooks:
            return self._put(value, due, pri, run, key, headers, job_id, unique, gen)
        return chain.push(
            self.queue,
            headers,
            lambda h: self._put(value, due, pri, run, key, h, job_id, unique, gen),
        )

    def schedule_many(self, jobs: Sequence[ScheduledJob]) -> list[EnqueueResult]:
        """``schedule`` for many jobs, pipelined per node (brokerq_beanstalk.batch_put)."""
        return batch_put.schedule_many(self, jobs)

    def revoke(self, job_id: str) -> bool:
        """Cancel a job that has not run yet: delete every reachable copy and, with a Redis
        guard, mark the id revoked (copies out of reach are deleted when reserved).

        True only if the job was found and cancelled: False for an unknown id and for a
        job that already ran, was dead-lettered or revoked. ConnectionFailed when Redis
        cannot say; ValueError for a malformed go-queue style id.
        """
        bq_id, copies = split_id(job_id)
        with self._lock:
            self._settle()
            mine = self._copies.pop(bq_id, [])
            if self._log is not None:
                try:
                    self._log.drain()
                except ConnectionFailed as e:
                    logger.warning("job copies not recorded in redis: %s", e)
        known = copies or mine
        marked = False
        if self._guard is not None and bq_id:
            marked, recorded = revoke(self._guard, bq_id, known=bool(known))
            known = list(dict.fromkeys([*known, *parse_copies(recorded, job_id)]))
        deleted = False
        with self._lock:
            for endpoint, jid in known:
                node = self._nodes.get(endpoint)
                if node is None:
                    logger.warning("revoke %s: endpoint %s is not configured", bq_id, endpoint)
                    continue
                try:
                    deleted |= node.delete(jid)
                except BrokerError as e:
                    logger.warning("revoke %s: copy on %s: %s", bq_id, endpoint, e)
        return marked if self._guard is not None else deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._settle()
            for node in self._nodes.values():
                node.close()
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._guard is not None:
                self._guard.close()

    # -- internals --------------------------------------------------------------------------
    def _targets(self) -> list[NodeConn]:
        nodes = list(self._nodes.values())
        if len(nodes) <= self.replicas:
            return nodes
        random.shuffle(nodes)
        now = time.monotonic()
        nodes.sort(key=lambda n: n.down_until > now)  # nodes known down go last
        return nodes[: self.replicas]

    def _put(
        self,
        value: bytes | str,
        due: float | None,
        pri: int,
        run: int,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        job_id: str | None = None,
        unique_for: float = 0.0,
        gen: str = "",
    ) -> str:
        """Encode and write one job; with ``job_id``, reserve it first (generation ``gen``,
        carried in the job's headers) and release it when the write fails."""
        if self.goqueue_compat and (key is not None or headers):
            logger.warning("goqueue_compat: key and headers are not carried by go-queue bodies")
        if job_id is not None:
            headers = {**(headers or {}), GEN: gen}
        bq_id, body = codec.encode(
            value, due, key=key, headers=headers, goqueue=self.goqueue_compat, job_id=job_id
        )
        if job_id is None or self._guard is None:
            return self._write(bq_id, body, due, pri, run)
        reserve(self._guard, job_id, gen, due, unique_for)
        try:
            return self._write(bq_id, body, due, pri, run)
        except BaseException:
            try:
                unreserve(self._guard, job_id, gen)
            except ConnectionFailed as e:  # it expires done_ttl after the due time
                logger.warning("job %s: reservation not released: %s", job_id, e)
            raise

    def _write(self, bq_id: str, body: bytes, due: float | None, pri: int, run: int) -> str:
        """Write ``body`` to ``replicas`` nodes; return once ``min_written`` acked it (the
        last answer is read by a later call, brokerq_beanstalk.fanout), else delete the
        copies written and raise."""
        seconds = 0.0 if due is None else max(0.0, due - time.time())
        delay = codec.beanstalk_delay(seconds, self.goqueue_compat)
        with self._lock:
            if self._closed:
                raise DeliveryError("producer is closed")
            write = Write(bq_id, body, due, self.min_written, Tally(), self._late)
            write.send(self._targets(), pri, delay, run)
            pump_until(self._all, lambda: write.settled, self._timeout)
            write.returned = True
            if write.ok:
                self._remember([write])
            else:
                for node, jid in write.written:  # revoke the partial write
                    try:
                        node.delete(jid)
                    except BrokerError as e:
                        logger.warning(
                            "could not revoke partial copy %s/%d: %s", node.endpoint, jid, e
                        )
        error = write.error()
        if error is not None:
            raise error
        if write.failed:
            logger.warning("job %s: copies failed on %s", bq_id, ", ".join(write.failed))
        for endpoint, failure in write.failed.items():  # metrics: replica writes failed per node
            self.middleware.replica_failed(self.queue, endpoint, failure)
        return bq_id

    def _remember(self, writes: list[Write]) -> None:
        """Record where ``writes`` went: here, and in Redis for revoke from elsewhere (sent
        without waiting, brokerq_beanstalk.copies). Under the lock."""
        copies = self._copies
        for w in writes:
            copies[w.bq_id] = [(n.endpoint, jid) for n, jid in w.written]
        while len(copies) > MAX_REMEMBERED:
            copies.popitem(last=False)
        if self._log is not None:
            now = time.time()
            try:
                self._log.record_many([(w.bq_id, w.due or now, w.copies()) for w in writes])
            except ConnectionFailed as e:  # written: only a revoke from elsewhere is weaker
                logger.warning("%d job(s): copies not recorded in redis: %s", len(writes), e)

    def _late(self, write: Write, node: NodeConn, result: int | BrokerError) -> None:
        """An answer that came after the job was returned (under the lock)."""
        if isinstance(result, BrokerError):
            logger.warning("job %s: copy on %s failed: %s", write.bq_id, node.endpoint, result)
            self.middleware.replica_failed(self.queue, node.endpoint, result)
        elif write.ok:
            self._remember([write])

    def _settle(self) -> None:
        """Read every answer still owed (before a revoke or close; under the lock)."""
        pump_until(self._all, lambda: False, self._timeout)

    def copies(self, job_id: str) -> list[str]:
        """Where this producer wrote ``job_id`` (``endpoint/job id``), if still remembered
        (after reading the answers still owed)."""
        with self._lock:
            self._settle()
            return [f"{ep}/{jid}" for ep, jid in self._copies.get(job_id, [])]
