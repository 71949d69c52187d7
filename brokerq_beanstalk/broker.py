"""``BeanstalkBroker``: the dq backend behind the ``beanstalk`` entry point.

Admin operations (check, stats, dead letters) open short-lived connections of their own.
Dead letters are found through the Redis index the consumers write when they bury a job
(beanstalkd can only peek the *first* buried job of a tube), plus that first buried job of
each node when it is not indexed (e.g. a body that could not be decoded).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

import greenstalk

from brokerq.broker import Broker, Capabilities, DeadLetter
from brokerq.errors import ConnectionFailed, DecodeError
from brokerq.message import Message
from brokerq_beanstalk import codec
from brokerq_beanstalk.config import Beanstalk, DqConf, split_endpoint
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.producer import Producer
from brokerq_beanstalk.source import BeanstalkSource

logger = logging.getLogger(__name__)


class BeanstalkBroker(Broker):
    """Replicated delayed jobs on beanstalkd (go-queue dq), consumed once via Redis."""

    name: ClassVar[str] = "beanstalk"
    section: ClassVar[str] = "dq"
    config_model: ClassVar[type[DqConf]] = DqConf
    capabilities: ClassVar[Capabilities] = Capabilities(
        delay=True,
        priority=True,
        counts_redeliveries=True,  # claims are counted in Redis (brokerq_beanstalk.guard)
        dead_letters=True,
    )

    def __init__(self, config: DqConf) -> None:
        self.conf = config
        self._guard: Guard | None = None

    def _new_guard(self) -> Guard:
        c = self.conf
        return Guard.from_conf(
            c.redis, claim_ttl=c.claim_ttl, done_ttl=c.done_ttl, dead_ttl=c.dead_ttl
        )

    @property
    def guard(self) -> Guard:
        if self._guard is None:
            self._guard = self._new_guard()
        return self._guard

    # -- producers / sources ----------------------------------------------------------------
    def producer(self) -> Producer:
        """The dq producer (push, delay, at, revoke), running this broker's push hooks."""
        return Producer.from_conf(self.conf, guard=self._new_guard(), middleware=self.middleware)

    def delay_producer(self) -> Producer:
        return self.producer()

    def source(self, prefetch: int | None = None) -> BeanstalkSource:
        """A new source (its own connections and Redis client). ``prefetch``: jobs it may
        hold beyond those running (the Worker's; default 8)."""
        c = self.conf
        return BeanstalkSource(
            c.beanstalks,
            self._new_guard(),
            ttr=c.ttr,
            priority=c.priority,
            claim_ttl=c.claim_ttl,
            prefetch=8 if prefetch is None else prefetch,
        )

    def worker_options(self) -> dict[str, Any]:
        """Deprecated ``dq.concurrency`` / ``dq.retry``, when written in the section."""
        written = self.conf.model_fields_set
        options: dict[str, Any] = {}
        if "concurrency" in written:
            options["concurrency"] = self.conf.concurrency
        if "retry" in written and self.conf.retry is not None:
            options["retry"] = self.conf.retry
        return options

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    # -- admin ------------------------------------------------------------------------------
    @contextmanager
    def _client(self, node: Beanstalk) -> Iterator[greenstalk.Client[bytes]]:
        try:
            sock = socket.create_connection(split_endpoint(node.endpoint), timeout=3.0)
            client: greenstalk.Client[bytes] = greenstalk.Client(
                sock, encoding=None, use=node.tube, watch=node.tube
            )
        except (OSError, greenstalk.Error) as e:
            raise ConnectionFailed(f"beanstalkd {node.endpoint}: {e}") from e
        try:
            yield client
        except (OSError, greenstalk.UnknownResponseError) as e:
            raise ConnectionFailed(f"beanstalkd {node.endpoint}: {e}") from e
        finally:
            client.close()

    def _node(self, endpoint: str) -> Beanstalk | None:
        return next((b for b in self.conf.beanstalks if b.endpoint == endpoint), None)

    def check(self) -> None:
        """Raise ConnectionFailed when Redis is down or fewer than ``min_written`` nodes
        answer (the broker could take no job), naming every unreachable one; with fewer
        nodes down it logs a warning naming them (consumers run on the others and
        reconnect in the background)."""
        down = [f"{ep}: {state}" for ep, state in self.node_states().items() if state != "up"]
        up = len(self.conf.beanstalks) - len(down)
        try:
            self.guard.ping()
        except ConnectionFailed as e:
            raise ConnectionFailed("; ".join([*down, str(e)])) from e
        needed = min(self.conf.min_written, self.conf.replicas, len(self.conf.beanstalks))
        if up < needed:
            raise ConnectionFailed(
                f"{up} of {len(self.conf.beanstalks)} beanstalkd node(s) answer, "
                f"{needed} needed (min_written): " + "; ".join(down)
            )
        if down:
            logger.warning(
                "%d of %d beanstalkd node(s) unreachable: %s",
                len(down),
                len(self.conf.beanstalks),
                "; ".join(down),
            )

    def node_states(self) -> dict[str, str]:
        """Each node's endpoint → ``up``, or why it cannot be reached."""
        out: dict[str, str] = {}
        for node in self.conf.beanstalks:
            try:
                with self._client(node) as c:
                    c.stats()
                out[node.endpoint] = "up"
            except ConnectionFailed as e:
                out[node.endpoint] = str(e).removeprefix(f"beanstalkd {node.endpoint}: ")
        return out

    def stats(self) -> dict[str, int]:
        """Jobs per state, each job once, then per-node lines.

        A job has a copy on each of ``replicas`` nodes: with one copy per node (replicas
        = nodes) a state's count is the largest over the nodes that answer; with fewer
        replicas than nodes it is the sum divided by ``replicas`` (an estimate). ``dead``
        counts buried copies (a dead job keeps exactly one). Per node:
        ``node <endpoint> copies`` (its copies in the tube), or ``node <endpoint>
        unreachable`` = 1 for a node that does not answer.
        """
        keys = {
            "pending": "current-jobs-ready",
            "delayed": "current-jobs-delayed",
            "in_flight": "current-jobs-reserved",
            "dead": "current-jobs-buried",
        }
        per_node: dict[str, dict[str, int] | None] = {}
        for node in self.conf.beanstalks:
            try:
                with self._client(node) as c:
                    st = c.stats_tube(node.tube)
                per_node[node.endpoint] = {k: int(str(st.get(v, 0))) for k, v in keys.items()}
            except greenstalk.NotFoundError:  # the tube does not exist (yet) on this node
                per_node[node.endpoint] = dict.fromkeys(keys, 0)
            except ConnectionFailed as e:
                logger.warning("stats: %s", e)
                per_node[node.endpoint] = None
        counts = [n for n in per_node.values() if n is not None]
        replicas = min(self.conf.replicas, len(self.conf.beanstalks))
        one_each = replicas >= len(self.conf.beanstalks)
        out: dict[str, int] = {}
        for k in keys:
            values = [n[k] for n in counts]
            if k == "dead":
                out[k] = sum(values)
            elif one_each:
                out[k] = max(values, default=0)
            else:
                out[k] = -(-sum(values) // replicas)
        out["nodes_up"] = len(counts)
        for endpoint, n in per_node.items():
            if n is None:
                out[f"node {endpoint} unreachable"] = 1
            else:
                out[f"node {endpoint} copies"] = sum(n.values())
        return out

    def _peek(self, ref: str) -> bytes | None:
        endpoint, _, jid = ref.rpartition("/")
        node = self._node(endpoint)
        if node is None or not jid.isdigit():
            return None
        try:
            with self._client(node) as c:
                if c.stats_job(int(jid)).get("state") != "buried":
                    return None
                return c.peek(int(jid)).body
        except (greenstalk.NotFoundError, ConnectionFailed):
            return None

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        if refs is not None:
            wanted = set(refs)
            found = [
                d for d in self.dead_letters(10_000) if d.ref in wanted or d.message.id in wanted
            ]
            return found[:limit]
        out: dict[str, DeadLetter] = {}
        for rec in self.guard.dead_records():
            if len(out) >= limit or rec["id"] in out:
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
        for node in self.conf.beanstalks:
            if len(out) >= limit:
                break
            try:
                with self._client(node) as c:
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
            out.setdefault(msg.id, DeadLetter(msg, error, None, ref))
        return list(out.values())

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Kick buried jobs back to ready, with their attempts and done mark cleared."""
        records = {r["ref"]: r for r in self.guard.dead_records()}
        targets = refs if refs is not None else [d.ref for d in self.dead_letters(10_000)]
        count = 0
        for ref in targets:
            rec = records.get(ref)
            if rec is not None:
                self.guard.forget_dead(rec, rerun=True)
            endpoint, _, jid = ref.rpartition("/")
            node = self._node(endpoint)
            if node is None or not jid.isdigit():
                continue
            try:
                with self._client(node) as c:
                    c.kick_job(int(jid))
                count += 1
            except greenstalk.NotFoundError:
                logger.warning("retry_dead: %s is no longer buried", ref)
        return count

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Delete every buried job of the tube on every node and the dead-letter records
        (only those ``refs`` when given)."""
        if refs is not None:
            return self._purge_refs(refs)
        for rec in self.guard.dead_records(100_000):
            self.guard.forget_dead(rec, rerun=False)
        count = 0
        for node in self.conf.beanstalks:
            try:
                with self._client(node) as c:
                    while True:
                        c.delete(c.peek_buried())
                        count += 1
            except greenstalk.NotFoundError:
                continue
            except ConnectionFailed as e:
                logger.warning("purge_dead: %s", e)
        return count

    def _purge_refs(self, refs: list[str]) -> int:
        wanted = set(refs)
        records = {r["ref"]: r for r in self.guard.dead_records(100_000)}
        count = 0
        for letter in self.dead_letters(10_000, refs):
            rec = records.get(letter.ref)
            if rec is not None:
                self.guard.forget_dead(rec, rerun=False)
            endpoint, _, jid = letter.ref.rpartition("/")
            node = self._node(endpoint)
            if node is None or not jid.isdigit():
                continue
            try:
                with self._client(node) as c:
                    c.delete(int(jid))
                count += 1
            except greenstalk.NotFoundError:
                logger.warning("purge_dead: %s is no longer buried", letter.ref)
            except ConnectionFailed as e:
                logger.warning("purge_dead: %s", e)
        del wanted
        return count
