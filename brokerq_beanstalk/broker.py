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
from typing import TYPE_CHECKING, Any, ClassVar

import greenstalk

from brokerq.broker import Broker, DeadLetter, Source, WorkerInfo
from brokerq.broker import Producer as PushProducer
from brokerq.errors import ConnectionFailed, DecodeError
from brokerq.message import Message
from brokerq_beanstalk import codec, workers
from brokerq_beanstalk.config import Beanstalk, DqConf, split_endpoint
from brokerq_beanstalk.consumer import make_source
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.producer import Producer, PushAdapter

if TYPE_CHECKING:
    from brokerq_beanstalk.fires import BeanstalkFireStore

logger = logging.getLogger(__name__)


class BeanstalkBroker(Broker):
    """Replicated delayed jobs on beanstalkd (go-queue dq), consumed once via Redis."""

    name: ClassVar[str] = "beanstalk"
    section: ClassVar[str] = "dq"
    config_model: ClassVar[type[DqConf]] = DqConf

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
    def producer(self) -> PushProducer:
        return PushAdapter(self.delay_producer())

    def delay_producer(self) -> Producer:
        return Producer.from_conf(self.conf, guard=self._new_guard())

    def source(self, prefetch: int | None = None) -> Source:
        return make_source(self.conf)

    def fire_store(self, namespace: str) -> BeanstalkFireStore:
        """Schedule fires claimed in Redis, written to beanstalkd (brokerq_beanstalk.fires)."""
        from brokerq_beanstalk.fires import BeanstalkFireStore

        return BeanstalkFireStore(self.conf, namespace)

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

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """A Redis key per worker with a ``ttl`` expiry (brokerq_beanstalk.workers)."""
        workers.beat(self.guard.client, self.conf.redis.prefix, self._tube, info, ttl)

    def workers(self) -> list[WorkerInfo]:
        return workers.live(self.guard.client, self.conf.redis.prefix, self._tube)

    @property
    def _tube(self) -> str:
        return self.conf.beanstalks[0].tube if self.conf.beanstalks else ""

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
        """Raise ConnectionFailed naming every unreachable node and Redis."""
        down: list[str] = []
        for node in self.conf.beanstalks:
            try:
                with self._client(node) as c:
                    c.stats()
            except ConnectionFailed as e:
                down.append(str(e))
        try:
            self.guard.ping()
        except ConnectionFailed as e:
            down.append(str(e))
        if down:
            raise ConnectionFailed("; ".join(down))

    def stats(self) -> dict[str, int]:
        """Copies per state summed over reachable nodes (each job counts once per replica)."""
        keys = {
            "pending": "current-jobs-ready",
            "delayed": "current-jobs-delayed",
            "in_flight": "current-jobs-reserved",
            "dead": "current-jobs-buried",
        }
        out = dict.fromkeys(keys, 0)
        for node in self.conf.beanstalks:
            try:
                with self._client(node) as c:
                    st = c.stats_tube(node.tube)
            except greenstalk.NotFoundError:
                continue
            except ConnectionFailed as e:
                logger.warning("stats: %s", e)
                continue
            for ours, theirs in keys.items():
                out[ours] += int(str(st.get(theirs, 0)))
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
