"""dq ``schedule_many`` (``delay_many`` / ``at_many``): many jobs per round trip to every node.

The jobs go in chunks of up to ``CHUNK`` jobs (or ``CHUNK_BYTES`` of bodies). Per chunk, one
write to each chosen node carries every ``put`` of the chunk; the next chunk is encoded and
sent before this one's answers are read (beanstalkd answers in the order it reads,
doc/protocol.txt), and each job is settled as soon as ``min_written`` nodes acked it
(brokerq_beanstalk.fanout). The rule of ``delay``
holds per job: a job that reached fewer than ``min_written`` nodes has the copies it did get
deleted again (one write per node for the whole chunk) and its slot holds the error ``delay``
would have raised (DeliveryError naming the failed nodes; MessageTooLarge; ConnectionFailed
when no node took it). A node whose connection fails mid-chunk fails the chunk's remaining
jobs on that node only. Where the jobs went is recorded in Redis with one pipelined write per
chunk (brokerq_beanstalk.copies), as ``delay`` records one.

Jobs with a caller-chosen ``job_id`` (or ``unique_for``) go through ``schedule`` one by one, so
they follow its id rules exactly. The broker's middleware push hooks run per job:
``before_push`` as the job is encoded, ``after_push`` with that job's outcome. One owner: the
producer's lock is held while the chunks are written (``schedule`` calls for caller-chosen
ids and the ``after_push`` hooks run outside it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from brokerq.batch_enqueue import EnqueueResult, ScheduledJob
from brokerq.errors import BrokerError, DeliveryError
from brokerq.headers import with_options
from brokerq.middleware import MiddlewareChain
from brokerq_beanstalk import codec
from brokerq_beanstalk._wire import NodeConn, pump_until
from brokerq_beanstalk.fanout import Tally, Write
from brokerq_beanstalk.protocol import check_put


class Producer(Protocol):
    """What a batch needs of ``brokerq_beanstalk.producer.Producer`` (its settings, lock and
    node connections): a Protocol, so the producer can import this module without a cycle."""

    min_written: int
    ttr: int
    priority: int
    goqueue_compat: bool
    middleware: MiddlewareChain
    queue: str
    _all: list[NodeConn]
    _timeout: float
    _lock: threading.Lock
    _closed: bool

    @property
    def schedule(self) -> Callable[..., str]: ...

    def _targets(self) -> list[NodeConn]: ...

    def _remember(self, writes: list[Write]) -> None: ...

    def _late(self, write: Write, node: NodeConn, result: int | BrokerError) -> None: ...


logger = logging.getLogger(__name__)

CHUNK = 500  # jobs per write to each node
CHUNK_BYTES = 4 << 20  # bodies per chunk at most (bytes), whatever their number


@dataclass(slots=True, eq=False)
class _Put:
    """One job on its way: where it stands in the caller's list, its fields and its write."""

    slot: int
    bq_id: str
    body: bytes
    due: float | None
    priority: int
    ttr: int
    hooked: bool  # before_push ran: after_push must too


def schedule_many(producer: Producer, jobs: Sequence[ScheduledJob]) -> list[EnqueueResult]:
    """Write ``jobs`` as ``producer.schedule`` would, many per round trip; one id or error
    per job, in order."""
    results: list[EnqueueResult] = [""] * len(jobs)
    plain: list[tuple[int, ScheduledJob]] = []
    for slot, job in enumerate(jobs):
        if job.job_id is None and job.unique_for is None:
            plain.append((slot, job))
            continue
        try:  # the id rules of ``schedule``, job by job
            results[slot] = producer.schedule(job.value, job.due, **job.options())
        except Exception as e:  # this job's failure, in its slot
            results[slot] = e
    if producer.goqueue_compat and any(j.key is not None or j.headers for _, j in plain):
        logger.warning("goqueue_compat: key and headers are not carried by go-queue bodies")
    done: list[tuple[_Put, Exception | None, dict[str, BrokerError]]] = []
    with producer._lock:
        if producer._closed:
            for slot, _ in plain:
                results[slot] = DeliveryError("producer is closed")
            return results
        # chunk k+1 is encoded and sent before chunk k's answers are read, so the nodes
        # always have work; at most two chunks' answers (~17 KB) wait in a socket buffer
        in_flight: tuple[list[_Put], list[Write]] | None = None
        for chunk in _chunks(_prepared(producer, plain, results)):
            sent = _send(producer, chunk)
            if in_flight is not None:
                done += _finish(producer, *in_flight)
            in_flight = sent
        if in_flight is not None:
            done += _finish(producer, *in_flight)
    chain = producer.middleware
    for put, error, failed in done:
        if error is None:  # metrics: replica writes failed per node, as ``delay`` reports them
            for endpoint, failure in failed.items():
                chain.replica_failed(producer.queue, endpoint, failure)
        if put.hooked:
            chain.after_push(producer.queue, error)
        results[put.slot] = put.bq_id if error is None else error
    return results


def _prepared(
    producer: Producer, jobs: list[tuple[int, ScheduledJob]], results: list[EnqueueResult]
) -> Iterator[_Put]:
    """Each job ready to send; a job that cannot be has its error put in its slot."""
    for slot, job in jobs:
        try:
            yield _prepare(producer, slot, job)
        except Exception as e:
            results[slot] = e


def _prepare(producer: Producer, slot: int, job: ScheduledJob) -> _Put:
    """The job's priority, TTR and body, as ``Producer.schedule`` builds them."""
    priority = producer.priority if job.priority is None else job.priority
    check_put(priority, 0, producer.ttr)
    headers = with_options(job.headers, time_limit=job.time_limit, type=job.type)
    if job.priority is not None:
        headers = {**(headers or {}), codec.PRIORITY: str(job.priority)}
    chain = producer.middleware
    hooked = chain.push_hooks
    if hooked:
        headers = chain.before_push(producer.queue, headers)
    try:
        bq_id, body = codec.encode(
            job.value, job.due, key=job.key, headers=headers, goqueue=producer.goqueue_compat
        )
    except Exception as e:
        if hooked:
            chain.after_push(producer.queue, e)
        raise
    return _Put(slot, bq_id, body, job.due, priority, producer.ttr, hooked)


def _chunks(puts: Iterable[_Put]) -> Iterator[list[_Put]]:
    chunk: list[_Put] = []
    size = 0
    for put in puts:
        if chunk and (len(chunk) >= CHUNK or size + len(put.body) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(put)
        size += len(put.body)
    if chunk:
        yield chunk


def _send(producer: Producer, chunk: list[_Put]) -> tuple[list[_Put], list[Write]]:
    """Send every put of ``chunk`` to each target node in one write (under the lock)."""
    now = time.time()
    tally = Tally()
    need, gq = producer.min_written, producer.goqueue_compat
    writes = [Write(p.bq_id, p.body, p.due, need, tally, producer._late) for p in chunk]
    commands = [
        (p.body, p.priority, codec.beanstalk_delay(_ahead(p.due, now), gq), p.ttr) for p in chunk
    ]
    for node in producer._targets():
        try:
            node.send_puts(commands, [w.answer(node) for w in writes])
        except BrokerError as e:
            for w in writes:
                w.failed[node.endpoint] = e
            continue
        for w in writes:
            w.waiting += 1
    for w in writes:
        if w.waiting == 0:
            tally.left -= 1
    return chunk, writes


def _finish(
    producer: Producer, chunk: list[_Put], writes: list[Write]
) -> list[tuple[_Put, Exception | None, dict[str, BrokerError]]]:
    """Read answers until each job of the chunk is settled, record the jobs written, delete
    the copies of those that failed; each job with its error or None (under the lock)."""
    tally = writes[0].tally
    pump_until(producer._all, lambda: tally.left <= 0, producer._timeout)
    for w in writes:
        w.returned = True
    ok = [w for w in writes if w.ok]
    if ok:
        producer._remember(ok)
    _cleanup([w for w in writes if not w.ok])
    partial = [w.bq_id for w in ok if w.failed]
    if partial:
        logger.warning("%d job(s) (%s, ...): some copies failed", len(partial), partial[0])
    return [(p, w.error(), dict(w.failed)) for p, w in zip(chunk, writes, strict=True)]


def _ahead(due: float | None, now: float) -> float:
    return 0.0 if due is None else max(0.0, due - now)


def _cleanup(failed: list[Write]) -> None:
    """Delete the copies of the jobs that did not reach enough nodes (one write per node);
    a copy that cannot be deleted is logged (the caller learns the job failed)."""
    lone: dict[NodeConn, list[int]] = {}
    for w in failed:
        for node, jid in w.written:
            lone.setdefault(node, []).append(jid)
    for node, jids in lone.items():
        try:
            node.delete_many(jids)
        except BrokerError as e:
            logger.warning(
                "could not revoke %d partial copies on %s: %s", len(jids), node.endpoint, e
            )
