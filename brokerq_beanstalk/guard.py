"""The Redis consume-once guard: one claim per running job, a done mark that outlives replicas.

All keys of one job share the hash tag ``{<id>}`` and every command touches the keys of one
job only, so the guard works on Redis Cluster and on proxies: pipelines of single-key
commands, and small Lua scripts sent with EVAL whose keys are passed explicitly and belong to
one job. Hot paths take many jobs per round trip (``acquire_many``, ``mark_done_many``, and
``mark_done_shared`` which groups concurrent callers)::

    <prefix>{<id>}:claim   owner token           SET NX PX claim_ttl, renewed while running
    <prefix>{<id>}:claims  claims taken          INCR with each claim, DECR when given back
    <prefix>{<id>}:done    done|dead|revoked     SET PX done_ttl: copies seen later are deleted
    <prefix>{<id>}:retry   "<attempt> <due>"     the next attempt and when it may start
    <prefix>{<id>}:copies  "<due> <ep/jid>,..."  where the producer wrote the job (revoke)
    <prefix>{<id>}:dead    JSON error record     PX dead_ttl
    <prefix>{<id>}:unique  "<gen> <created> <due> <unique_for ms>"  a caller-chosen id's
                           reservation (brokerq_beanstalk.unique): live job, then unique_for
    <prefix>{<id>}:fin     "<done|dead> <ended> <created>"  PX keep_done (Broker.job)
    <prefix>dead           list of dead records  the dead-letter index (LPUSH / LRANGE)

Attempts live in Redis, not in job bodies: beanstalkd cannot rewrite a body and the other
replicas still carry the original one; whichever copy runs next reads the attempt here. The
attempt a claim hands out is the larger of the recorded retry and the number of claims
taken and not given back: a worker killed by its handler never records anything, so its
job comes back with one attempt more each time (the Worker dead-letters it past
``max_attempts`` as WorkerCrashed). Redis errors surface as ConnectionFailed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.config import RedisConf
from brokerq_beanstalk.lua import _ACQUIRE, _DONE, _END, _GIVE_BACK, _RELEASE, _RENEW
from brokerq_beanstalk.redisconn import connect, describe

__all__ = ["Claimed", "Guard", "connect", "describe"]

logger = logging.getLogger(__name__)


def _closed_gate() -> Any:
    gate = threading.Lock()  # a held lock: cheaper to wait on than an Event
    gate.acquire()
    return gate


@dataclass(slots=True, eq=False)
class _Waiter:
    """One caller of ``Guard.mark_done_shared``."""

    job_id: str
    token: str | None
    gate: Any = field(default_factory=_closed_gate)  # released when it may go on
    lead: bool = False
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """What ``acquire`` learnt in one round trip. ``attempt``: the attempt this claim runs
    (recorded retries and claims taken, whichever is larger)."""

    claimed: bool
    done: str | None
    attempt: int
    due: float | None


def parse_retry(raw: bytes) -> tuple[int, float, str]:
    """A ``retry`` record → (next attempt, its unix due time, the last error)."""
    attempt, _, rest = raw.decode(errors="replace").partition(" ")
    due, _, error = rest.partition(" ")
    return int(attempt), float(due), error


class Guard:
    """Claim / renew / release / done marks for jobs, keyed by brokerq id."""

    def __init__(
        self,
        client: Any,
        prefix: str = "brokerq:dq:",
        *,
        claim_ttl: float = 15.0,
        done_ttl: float = 7 * 86400.0,
        dead_ttl: float = 30 * 86400.0,
        keep_done: float = 3600.0,
        endpoint: str = "",
    ) -> None:
        self.client = client
        self.endpoint = endpoint  # where, for errors (no credentials)
        self.prefix = prefix
        self.claim_ms = int(claim_ttl * 1000)
        self.done_ms = int(done_ttl * 1000)
        self.dead_ms = int(dead_ttl * 1000)
        self.keep_ms = int(keep_done * 1000)
        self._group: list[_Waiter] = []
        self._group_lock = threading.Lock()
        self._group_busy = False
        # plain Redis and Sentinel clients: hot paths write commands on a pooled connection
        # directly (redis-py's Pipeline costs ~2x the CPU); Cluster uses pipelines
        self._pool = None if isinstance(client, RedisCluster) else client.connection_pool

    @classmethod
    def from_conf(cls, conf: RedisConf, **ttls: float) -> Guard:
        return cls(connect(conf), conf.prefix, endpoint=describe(conf), **ttls)

    def key(self, job_id: str, kind: str) -> str:
        return f"{self.prefix}{{{job_id}}}:{kind}"

    def _batch(self, what: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and read every answer (a pipeline, no callbacks)."""
        pool = self._pool
        if pool is None:
            pipe = self.client.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            return self.run(what, pipe)
        try:
            conn = pool.get_connection()
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis ({what}): {e}") from e
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            return [conn.read_response() for _ in commands]
        except BaseException as e:
            conn.disconnect()  # answers may be left unread: never reuse this connection
            if isinstance(e, redis.RedisError):
                raise ConnectionFailed(f"redis ({what}): {e}") from e
            raise
        finally:
            pool.release(conn)

    def run(self, what: str, pipe: Any) -> list[Any]:
        """Execute a redis-py pipeline; ConnectionFailed naming ``what`` on Redis errors."""
        try:
            return list(pipe.execute())
        except redis.RedisError as e:
            if self._pool is None and isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
                self._refresh_slots()
            raise ConnectionFailed(f"redis ({what}): {e}") from e

    def _refresh_slots(self) -> None:
        """Re-read the Cluster's slot map after a node failed.

        redis-py (8.1) does not refresh it from a pipeline when the failed node was its default
        node, so after a master failover it kept calling the dead master (tests/cluster).
        """
        try:
            self.client.nodes_manager.initialize()
        except redis.RedisError as e:
            logger.debug("redis cluster: slot map refresh failed: %s", e)

    # -- single operations ------------------------------------------------------------------
    def eval(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one Lua ``script`` on ``keys`` (one hash tag); ConnectionFailed naming ``what``."""
        return self.eval_command(what, ("EVAL", script, len(keys), *keys, *args))

    def eval_command(self, what: str, command: tuple[Any, ...]) -> Any:
        """Run one command and return its answer; ConnectionFailed naming ``what``."""
        return self._batch(what, [command])[0]

    def claim(self, job_id: str, token: str, ttl: float | None = None) -> bool:
        """SET claim NX PX: True when this token now owns the job."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.key(job_id, "claim"), token, nx=True, px=int(ttl * 1000) if ttl else self.claim_ms
        )
        return bool(self.run("claim", pipe)[0])

    def _unclaim(self, pipe: Any, job_id: str, token: str) -> None:
        """Queue compare-and-delete of a claim on ``pipe``.

        EVAL, not a registered script: redis-py sends ``SCRIPT EXISTS`` before every pipeline
        holding a registered script (an extra round trip); Redis caches the EVAL body anyway.
        """
        pipe.execute_command("EVAL", _RELEASE, 1, self.key(job_id, "claim"), token)

    def acquire(self, job_id: str, token: str) -> Claimed:
        """Claim and, in the same round trip, read the done mark and the retry state."""
        return self.acquire_many([(job_id, token)])[0]

    def acquire_many(
        self, jobs: list[tuple[str, str]], gens: list[str] | None = None
    ) -> list[Claimed]:
        """``acquire`` for several ``(id, token)`` in one round trip.

        The reads run after the SET on the same server (same hash slot), so a claim won after
        another owner's ``retry`` also sees the attempt that owner recorded. ``gens``: each
        job's generation (caller-chosen ids, brokerq_beanstalk.unique; "" for none): a copy
        of an earlier job with the same id is not claimed, its ``done`` is ``stale``.
        """
        gens = gens or [""] * len(jobs)
        key, ms, done_ms = self.key, self.claim_ms, self.done_ms
        cmds = [
            (
                "EVAL",
                _ACQUIRE,
                5,
                key(i, "claim"),
                key(i, "done"),
                key(i, "retry"),
                key(i, "claims"),
                key(i, "unique"),
                token,
                ms,
                done_ms,
                gen,
            )
            for (i, token), gen in zip(jobs, gens, strict=True)
        ]
        out: list[Claimed] = []
        for got, done, retry, taken in self._batch("claim", cmds):
            attempt, due = 1, None
            if retry:
                attempt, due, _ = parse_retry(retry)
            attempt = max(attempt, int(taken))
            out.append(Claimed(bool(got), done.decode() if done else None, attempt, due))
        return out

    def renew(self, claims: list[tuple[str, str]]) -> list[bool]:
        """Extend the claims ``(id, token)`` still owned; False for each one lost."""
        if not claims:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id, token in claims:
            pipe.execute_command("EVAL", _RENEW, 1, self.key(job_id, "claim"), token, self.claim_ms)
        return [bool(r) for r in self.run("renew", pipe)]

    def give_back(self, job_id: str, token: str) -> None:
        """Give up a claim (only if still ours) on a job that was not processed: its claim
        no longer counts as an attempt."""
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(
            "EVAL", _GIVE_BACK, 2, self.key(job_id, "claim"), self.key(job_id, "claims"), token
        )
        self.run("release", pipe)

    def is_done(self, job_id: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.key(job_id, "done"))
        return bool(self.run("is_done", pipe)[0])

    def mark_done(self, job_id: str, token: str | None = None, status: str = "done") -> None:
        """The job must never run again: set the done mark, then drop our claim."""
        self.mark_done_many([(job_id, token)], status)

    def mark_done_many(self, jobs: list[tuple[str, str | None]], status: str = "done") -> None:
        """``mark_done`` for several ``(id, token)`` in one round trip."""
        key, ms, keep, now = self.key, self.done_ms, self.keep_ms, repr(time.time())
        cmds = [
            (
                "EVAL",
                _DONE,
                4,
                key(i, "done"),
                key(i, "claim"),
                key(i, "unique"),
                key(i, "fin"),
                status,
                ms,
                token or "",
                now,
                keep,
            )
            for i, token in jobs
        ]
        self._batch("mark_done", cmds)

    def mark_done_shared(self, job_id: str, token: str | None = None) -> None:
        """``mark_done`` from many threads at once, grouped into shared round trips.

        Returns (or raises ConnectionFailed) only once this job's mark is recorded (or
        failed), like ``mark_done``. The first caller leads: it records everything queued,
        then hands the lead to the first caller that queued meanwhile (group commit).
        """
        me = _Waiter(job_id, token)
        with self._group_lock:
            self._group.append(me)
            if not self._group_busy:
                self._group_busy = me.lead = True
        if not me.lead:
            me.gate.acquire()
        if me.lead:
            with self._group_lock:
                batch, self._group = self._group, []
            error: BaseException | None = None
            try:
                self.mark_done_many([(w.job_id, w.token) for w in batch])
            except BaseException as e:  # every waiter must learn it, and the lead move on
                error = e
            with self._group_lock:
                if self._group:
                    nxt = self._group[0]
                    nxt.lead = True
                    nxt.gate.release()
                else:
                    self._group_busy = False
            for w in batch:
                w.error = error
                w.lead = False
                if w is not me:
                    w.gate.release()
        if me.error is not None:
            raise me.error

    @property
    def pool(self) -> Any:
        """The connection pool of a plain or Sentinel client (None for Cluster)."""
        return self._pool

    def schedule_retry(
        self, job_id: str, token: str, attempt: int, due: float, error: str = ""
    ) -> None:
        """Record the next attempt, its time and the last error (its first 500 characters),
        then release the claim (in that order)."""
        pipe = self.client.pipeline(transaction=False)
        value = f"{attempt} {due!r} {error[:500]}"
        pipe.set(self.key(job_id, "retry"), value, px=self.done_ms)
        self._unclaim(pipe, job_id, token)
        self.run("retry", pipe)

    # -- dead letters -----------------------------------------------------------------------
    def record_dead(
        self,
        job_id: str,
        token: str,
        error: str,
        ref: str,
        attempt: int = 1,
        *,
        error_type: str = "",
        traceback: str = "",
        tube: str = "",
    ) -> None:
        """Mark dead (other copies are then deleted), keep the error (with its type and
        traceback) and index the buried copy, with its ``tube``: the index is shared by every
        tube under the prefix, so each queue lists, retries and purges only its own."""
        record = json.dumps(
            {
                "id": job_id,
                "error": error,
                "type": error_type,
                "traceback": traceback,
                "failed_at": time.time(),
                "ref": ref,
                "attempt": attempt,
                "tube": tube,
            }
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "done"), "dead", px=self.done_ms)
        pipe.set(self.key(job_id, "dead"), record, px=self.dead_ms)
        pipe.lpush(f"{self.prefix}dead", record)
        pipe.pexpire(f"{self.prefix}dead", self.dead_ms)
        pipe.execute_command(
            "EVAL",
            _END,
            4,
            self.key(job_id, "done"),
            self.key(job_id, "claim"),
            self.key(job_id, "unique"),
            self.key(job_id, "fin"),
            "dead",
            "",
            "",
            repr(time.time()),
            self.keep_ms,
        )
        self._unclaim(pipe, job_id, token)
        self.run("dead", pipe)

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as e:
            where = f" {self.endpoint}" if self.endpoint else ""
            raise ConnectionFailed(f"redis{where}: {e}") from e

    def close(self) -> None:
        try:
            self.client.close()
        except redis.RedisError:
            pass
