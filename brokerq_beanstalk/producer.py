"""The dq producer: one job, one id, the same bytes on ``replicas`` nodes, ``min_written`` acks.

The command is sent to every chosen node before any answer is read, so the writes overlap on
the wire without threads. Fewer than ``min_written`` acks → the copies written are deleted
again and DeliveryError names the failed nodes.

``delay`` returns the job's brokerq id (the ``Message.id`` its handler sees). The copies'
locations (``<endpoint>/<job id>``) are remembered per producer (last 100k jobs, see
``copies``); ``revoke`` deletes every copy it knows and, with a Redis guard, marks the id
revoked, so copies it could not reach (another process's job, a node down right now) are
deleted, not run, when a consumer reserves them. ``revoke`` also takes the go-queue style
``<id>|<endpoint>/<job id>,...`` form.

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
from typing import Any

from brokerq.broker import DelayProducer, refuse_options
from brokerq.broker import Producer as PushProducer
from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq.headers import with_options
from brokerq_beanstalk import codec
from brokerq_beanstalk._wire import NodeConn
from brokerq_beanstalk.config import Beanstalk, DqConf
from brokerq_beanstalk.guard import Guard

logger = logging.getLogger(__name__)

MAX_REMEMBERED = 100_000
HOLD = 1.0  # seconds before its time a job is made ready (the consumer holds it)


def beanstalk_delay(seconds: float, goqueue: bool = False) -> int:
    """Whole seconds to give beanstalkd for a job due in ``seconds``."""
    if goqueue:
        return max(0, math.ceil(seconds))
    return max(0, math.floor(seconds - HOLD))


def split_id(job_id: str) -> tuple[str, list[tuple[str, int]]]:
    """``id|ep/jid,ep/jid`` → ``(id, [(ep, jid), ...])``."""
    bq_id, _, copies = job_id.partition("|")
    out: list[tuple[str, int]] = []
    for copy in filter(None, copies.split(",")):
        endpoint, _, jid = copy.rpartition("/")
        if not endpoint or not jid.isdigit():
            raise ValueError(f"invalid dq job id {job_id!r}")
        out.append((endpoint, int(jid)))
    return bq_id, out


class Producer(DelayProducer):
    """go-queue ``dq.Producer``: replicated delayed jobs. Thread-safe (one write at a time)."""

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
    ) -> None:
        if not beanstalks:
            raise ValueError("at least one beanstalk node is needed")
        self.replicas = max(1, min(replicas, len(beanstalks)))
        self.min_written = max(1, min(min_written, self.replicas))
        self.ttr = max(1, math.ceil(ttr))
        self.priority = priority
        self.goqueue_compat = goqueue_compat
        self._guard = guard
        self._nodes = {b.endpoint: NodeConn(b.endpoint, b.tube, timeout) for b in beanstalks}
        self._lock = threading.Lock()
        self._closed = False
        self._copies: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()

    @classmethod
    def from_conf(cls, conf: DqConf, guard: Guard | None = None) -> Producer:
        return cls(
            conf.beanstalks,
            conf.replicas,
            conf.min_written,
            guard=guard,
            ttr=conf.ttr,
            priority=conf.priority,
            goqueue_compat=conf.goqueue_compat,
        )

    # -- DelayProducer ----------------------------------------------------------------------
    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """Run the job at unix time ``due`` (validated by ``delay`` / ``at``); return its id."""
        refuse_options("beanstalk", job_id=job_id)
        headers = with_options(headers, time_limit=time_limit, type=type)
        return self._put(value, due, max(0.0, due - time.time()), priority, None, key, headers)

    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """An immediate job (no ``not_before``); return its id."""
        refuse_options("beanstalk", job_id=job_id)
        headers = with_options(headers, time_limit=time_limit, type=type)
        return self._put(value, None, 0.0, priority, None, key, headers)

    def revoke(self, job_id: str) -> bool:
        """Delete every reachable copy and mark the id revoked; True if anything was cancelled."""
        bq_id, copies = split_id(job_id)
        marked = self._guard.revoke(bq_id) if self._guard is not None and bq_id else False
        deleted = False
        with self._lock:
            copies = copies or self._copies.pop(bq_id, [])
            for endpoint, jid in copies:
                node = self._nodes.get(endpoint)
                if node is None:
                    logger.warning("revoke %s: endpoint %s is not configured", bq_id, endpoint)
                    continue
                try:
                    deleted |= node.delete(jid)
                except BrokerError as e:
                    logger.warning("revoke %s: copy on %s: %s", bq_id, endpoint, e)
        return marked or deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for node in self._nodes.values():
                node.close()
            if self._guard is not None:
                self._guard.close()

    # -- internals --------------------------------------------------------------------------
    def _targets(self) -> list[NodeConn]:
        nodes = list(self._nodes.values())
        if len(nodes) <= self.replicas:
            return nodes
        random.shuffle(nodes)
        now = time.monotonic()
        nodes.sort(key=lambda n: n._down_until > now)  # nodes known down go last
        return nodes[: self.replicas]

    def _put(
        self,
        value: bytes | str,
        due: float | None,
        seconds: float,
        priority: int | None,
        ttr: float | None,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
    ) -> str:
        if self.goqueue_compat and (key is not None or headers):
            logger.warning("goqueue_compat: key and headers are not carried by go-queue bodies")
        bq_id, body = codec.encode(
            value, due, key=key, headers=headers, goqueue=self.goqueue_compat
        )
        delay = beanstalk_delay(seconds, self.goqueue_compat)
        pri = self.priority if priority is None else priority
        run = self.ttr if ttr is None else max(1, math.ceil(ttr))
        written: list[tuple[NodeConn, int]] = []
        failed: dict[str, BrokerError] = {}
        with self._lock:
            if self._closed:
                raise DeliveryError("producer is closed")
            sent: list[NodeConn] = []
            for node in self._targets():
                try:
                    node.send_put(body, pri, delay, run)
                    sent.append(node)
                except BrokerError as e:
                    failed[node.endpoint] = e
            for node in sent:
                try:
                    written.append((node, node.read_put()))
                except BrokerError as e:
                    failed[node.endpoint] = e
            if len(written) < self.min_written:
                for node, jid in written:  # revoke the partial write
                    try:
                        node.delete(jid)
                    except BrokerError as e:
                        logger.warning(
                            "could not revoke partial copy %s/%d: %s", node.endpoint, jid, e
                        )
        if len(written) < self.min_written:
            too_big = [e for e in failed.values() if isinstance(e, MessageTooLarge)]
            if too_big:
                raise MessageTooLarge(f"job of {len(body)} bytes: {too_big[0]}") from too_big[0]
            reasons = "; ".join(f"{ep}: {e}" for ep, e in failed.items())
            err = DeliveryError(
                f"job {bq_id} written to {len(written)} node(s), {self.min_written} needed; "
                f"failed: {reasons}",
                failed=1,
            )
            cause = next(iter(failed.values()), None)
            if all(isinstance(e, ConnectionFailed) for e in failed.values()) and not written:
                raise ConnectionFailed(str(err)) from cause
            raise err from cause
        if failed:
            logger.warning("job %s: copies failed on %s", bq_id, ", ".join(failed))
        with self._lock:
            self._copies[bq_id] = [(n.endpoint, jid) for n, jid in written]
            if len(self._copies) > MAX_REMEMBERED:
                self._copies.popitem(last=False)
        return bq_id

    def copies(self, job_id: str) -> list[str]:
        """Where this producer wrote ``job_id`` (``endpoint/job id``), if still remembered."""
        with self._lock:
            return [f"{ep}/{jid}" for ep, jid in self._copies.get(job_id, [])]


class PushAdapter(PushProducer):
    """``brokerq.broker.Producer`` over a dq Producer: push = an immediate job."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        self._producer.push(
            value, key, headers, job_id=job_id, priority=priority, time_limit=time_limit, type=type
        )

    def close(self) -> None:
        self._producer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)
