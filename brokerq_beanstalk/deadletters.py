"""Dead letters of the dq backend: buried copies on the nodes, indexed in Redis.

A consumer that dead-letters a job buries its copy and records, in one Redis pipeline
(``Guard.record_dead``), the done mark ``dead`` and a JSON record (id, error, error type,
traceback, attempt, ref = ``endpoint/job id``, failed_at) pushed on ``<prefix>dead``.
beanstalkd can only peek the *first* buried job of a tube, so listing goes through that
index, plus the first buried job of each node when it is not indexed (e.g. a body that could
not be decoded). ``refs`` select by ref or by job id everywhere.

A dead job with a caller-chosen id (brokerq_beanstalk.unique) that is retried takes its id
again (its own generation, kept ``unique_for`` 0 after it ends); when a newer job holds the
id meanwhile, it stays dead (logged), since the consumers would delete its copy as stale.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import greenstalk

from brokerq.broker import DeadLetter
from brokerq.errors import ConnectionFailed, DecodeError, DuplicateJob
from brokerq.message import Message
from brokerq_beanstalk import codec
from brokerq_beanstalk.admin import node_client
from brokerq_beanstalk.config import Beanstalk, DqConf
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.unique import reserve

logger = logging.getLogger(__name__)

SCAN = 100_000  # records read at most when looking letters up by ref


class DeadLetters:
    """List, requeue and purge dead letters (admin: short-lived node connections)."""

    def __init__(self, conf: DqConf, guard: Guard) -> None:
        self.conf = conf
        self.guard = guard

    # -- the Redis index --------------------------------------------------------------------
    def records(self, limit: int = 1000) -> list[dict[str, Any]]:
        """This queue's records, newest first. The index is shared by every tube under the
        guard's prefix: a record is this queue's when its copy was buried on one of this
        config's nodes in that node's tube (records written before the tube was recorded
        count as this queue's, as they did then)."""
        pipe = self.guard.client.pipeline(transaction=False)
        pipe.lrange(f"{self.guard.prefix}dead", 0, limit - 1)
        tubes = {b.endpoint: b.tube for b in self.conf.beanstalks}
        out = []
        for raw in self.guard.run("dead letters", pipe)[0]:
            record = json.loads(raw)
            endpoint = str(record.get("ref", "")).rpartition("/")[0]
            if endpoint in tubes and record.get("tube", tubes[endpoint]) == tubes[endpoint]:
                out.append(record)
        return out

    def forget(self, record: dict[str, Any], *, rerun: bool) -> None:
        """Drop a record; with ``rerun`` also clear done mark, retries and claim count so the
        job runs afresh at attempt 1."""
        g = self.guard
        job_id = record["id"]
        pipe = g.client.pipeline(transaction=False)
        pipe.lrem(f"{g.prefix}dead", 0, json.dumps(record))
        pipe.delete(g.key(job_id, "dead"))
        if rerun:  # single-key commands: Redis Cluster pipelines refuse multi-key DEL
            for kind in ("done", "retry", "claims"):
                pipe.delete(g.key(job_id, kind))
        g.run("dead letters", pipe)

    # -- the nodes --------------------------------------------------------------------------
    def _node(self, endpoint: str) -> Beanstalk | None:
        return next((b for b in self.conf.beanstalks if b.endpoint == endpoint), None)

    def _split(self, ref: str) -> tuple[Beanstalk, int] | None:
        endpoint, _, jid = ref.rpartition("/")
        node = self._node(endpoint)
        return (node, int(jid)) if node is not None and jid.isdigit() else None

    def _peek(self, ref: str) -> bytes | None:
        where = self._split(ref)
        if where is None:
            return None
        node, jid = where
        try:
            with node_client(node) as c:
                if c.stats_job(jid).get("state") != "buried":
                    return None
                return c.peek(jid).body
        except (greenstalk.NotFoundError, ConnectionFailed):
            return None

    # -- Broker operations ------------------------------------------------------------------
    def letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """Up to ``limit`` letters, newest record first; only ``refs`` (refs or ids) if given."""
        wanted = set(refs) if refs is not None else None
        out: dict[str, DeadLetter] = {}
        for rec in self.records(SCAN if wanted is not None else 1000):
            if len(out) >= limit or rec["id"] in out:
                continue
            if wanted is not None and rec["id"] not in wanted and rec["ref"] not in wanted:
                continue
            body = self._peek(rec["ref"])
            if body is None:
                continue
            try:
                msg = codec.decode(body)
            except DecodeError:
                msg = Message(value=body, id=rec["id"])
            out[rec["id"]] = DeadLetter(
                replace(msg, attempt=int(rec.get("attempt", 1))),
                rec["error"],
                rec["failed_at"],
                rec["ref"],
                rec.get("traceback") or "",
            )
        known = {d.ref for d in out.values()}
        for node in self.conf.beanstalks:  # buried without a record (undecodable bodies)
            if len(out) >= limit:
                break
            try:
                with node_client(node) as c:
                    job = c.peek_buried()
            except (greenstalk.NotFoundError, ConnectionFailed):
                continue
            ref = f"{node.endpoint}/{job.id}"
            if ref in known:
                continue
            try:
                msg = codec.decode(job.body)
                error = "buried"
            except DecodeError as e:
                msg, error = Message(value=job.body, id=codec.goqueue_id(job.body)), str(e)
            if wanted is None or msg.id in wanted or ref in wanted:
                out.setdefault(msg.id, DeadLetter(msg, error, None, ref))
        return list(out.values())

    def retry(self, refs: list[str] | None = None) -> int:
        """Kick buried jobs back to ready (at their own priority: kick keeps it), with their
        attempts and done mark cleared; return how many."""
        return self._each(refs, rerun=True, verb="retry_dead")

    def purge(self, refs: list[str] | None = None) -> int:
        """Delete buried jobs and their records: every one of the tube on every node, or
        only those ``refs`` (refs or job ids); return how many."""
        if refs is None:
            for record in self.records(SCAN):
                self.forget(record, rerun=False)
            count = 0
            for node in self.conf.beanstalks:
                try:
                    with node_client(node) as c:
                        while True:
                            c.delete(c.peek_buried())
                            count += 1
                except greenstalk.NotFoundError:
                    continue
                except ConnectionFailed as e:
                    logger.warning("purge_dead: %s", e)
            return count
        return self._each(refs, rerun=False, verb="purge_dead")

    def _each(self, refs: list[str] | None, *, rerun: bool, verb: str) -> int:
        """Forget the records of the dead letters ``refs`` (all when None) and kick
        (``rerun``) or delete their buried copies; return how many copies were handled.
        A node that is down fails a retry (ConnectionFailed) and is skipped by a purge."""
        records = {r["ref"]: r for r in self.records(SCAN)}
        count = 0
        for letter in self.letters(SCAN, refs):
            gen = letter.message.headers.get(codec.GEN)
            if rerun and gen:
                try:
                    reserve(self.guard, letter.message.id, gen, None, 0.0)
                except DuplicateJob as e:
                    logger.warning("%s: %s left dead: %s by a newer job", verb, letter.ref, e)
                    continue
            rec = records.get(letter.ref)
            if rec is not None:
                self.forget(rec, rerun=rerun)
            where = self._split(letter.ref)
            if where is None:
                continue
            node, jid = where
            try:
                with node_client(node) as c:
                    if rerun:
                        c.kick_job(jid)
                    else:
                        c.delete(jid)
                count += 1
            except greenstalk.NotFoundError:
                logger.warning("%s: %s is no longer buried", verb, letter.ref)
            except ConnectionFailed as e:
                if rerun:
                    raise
                logger.warning("%s: %s", verb, e)
        return count
