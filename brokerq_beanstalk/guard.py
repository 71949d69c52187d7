"""The Redis consume-once guard: one claim per running job, a done mark that outlives replicas.

Every command touches one key, and all keys of one job share the hash tag ``{<id>}``, so the
guard works on Redis Cluster and on proxies (pipelines of single-key commands, and two
one-key Lua scripts for compare-and-renew / compare-and-delete of a claim)::

    <prefix>{<id>}:claim   owner token           SET NX PX claim_ttl, renewed while running
    <prefix>{<id>}:done    done|dead|revoked     SET PX done_ttl: copies seen later are deleted
    <prefix>{<id>}:retry   "<attempt> <due>"     the next attempt and when it may start
    <prefix>{<id>}:dead    JSON error record     PX dead_ttl
    <prefix>dead           list of dead records  the dead-letter index (LPUSH / LRANGE)

Attempts live in Redis, not in job bodies: beanstalkd cannot rewrite a body and the other
replicas still carry the original one; whichever copy runs next reads the attempt here.
Redis errors surface as ConnectionFailed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.config import RedisConf, split_endpoint

logger = logging.getLogger(__name__)

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def connect(conf: RedisConf) -> Any:
    """A redis-py client for a URL, a Sentinel master or a Cluster (short socket timeouts)."""
    opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if conf.sentinel is not None:
        nodes = [split_endpoint(n) for n in conf.sentinel.nodes]
        sentinel = Sentinel(nodes, **opts)  # type: ignore[no-untyped-call]
        return sentinel.master_for(conf.sentinel.master, **opts)  # type: ignore[no-untyped-call]
    if conf.cluster:
        return RedisCluster.from_url(conf.url, **opts)
    return redis.Redis.from_url(conf.url, **opts)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What ``acquire`` learnt in one round trip."""

    claimed: bool
    done: str | None
    attempt: int
    due: float | None


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
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.claim_ms = int(claim_ttl * 1000)
        self.done_ms = int(done_ttl * 1000)
        self.dead_ms = int(dead_ttl * 1000)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_conf(cls, conf: RedisConf, **ttls: float) -> Guard:
        return cls(connect(conf), conf.prefix, **ttls)

    def key(self, job_id: str, kind: str) -> str:
        return f"{self.prefix}{{{job_id}}}:{kind}"

    def _run(self, what: str, pipe: Any) -> list[Any]:
        try:
            return list(pipe.execute())
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis ({what}): {e}") from e

    # -- single operations ------------------------------------------------------------------
    def claim(self, job_id: str, token: str, ttl: float | None = None) -> bool:
        """SET claim NX PX: True when this token now owns the job."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.key(job_id, "claim"), token, nx=True, px=int(ttl * 1000) if ttl else self.claim_ms
        )
        return bool(self._run("claim", pipe)[0])

    def acquire(self, job_id: str, token: str) -> Claimed:
        """Claim and, in the same round trip, read the done mark and the retry state.

        The reads run after the SET on the same server (same hash slot), so a claim won after
        another owner's ``retry`` also sees the attempt that owner recorded.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "claim"), token, nx=True, px=self.claim_ms)
        pipe.get(self.key(job_id, "done"))
        pipe.get(self.key(job_id, "retry"))
        got, done, retry = self._run("claim", pipe)
        attempt, due = 1, None
        if retry:
            a, _, d = retry.decode().partition(" ")
            attempt, due = int(a), float(d)
        return Claimed(bool(got), done.decode() if done else None, attempt, due)

    def renew(self, claims: list[tuple[str, str]]) -> list[bool]:
        """Extend the claims ``(id, token)`` still owned; False for each one lost."""
        if not claims:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id, token in claims:
            self._renew(keys=[self.key(job_id, "claim")], args=[token, self.claim_ms], client=pipe)
        return [bool(r) for r in self._run("renew", pipe)]

    def release(self, job_id: str, token: str) -> None:
        """Give up a claim (only if still ours)."""
        pipe = self.client.pipeline(transaction=False)
        self._release(keys=[self.key(job_id, "claim")], args=[token], client=pipe)
        self._run("release", pipe)

    def is_done(self, job_id: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.key(job_id, "done"))
        return bool(self._run("is_done", pipe)[0])

    def mark_done(self, job_id: str, token: str | None = None, status: str = "done") -> None:
        """The job must never run again: set the done mark, then drop our claim."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "done"), status, px=self.done_ms)
        if token is not None:
            self._release(keys=[self.key(job_id, "claim")], args=[token], client=pipe)
        self._run("mark_done", pipe)

    def revoke(self, job_id: str) -> bool:
        """Mark a job revoked unless it is already done; True when this call marked it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "done"), "revoked", nx=True, px=self.done_ms)
        return bool(self._run("revoke", pipe)[0])

    def schedule_retry(self, job_id: str, token: str, attempt: int, due: float) -> None:
        """Record the next attempt and its time, then release the claim (in that order)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "retry"), f"{attempt} {due!r}", px=self.done_ms)
        self._release(keys=[self.key(job_id, "claim")], args=[token], client=pipe)
        self._run("retry", pipe)

    # -- dead letters -----------------------------------------------------------------------
    def record_dead(self, job_id: str, token: str, error: str, ref: str, attempt: int = 1) -> None:
        """Mark dead (other copies are then deleted), keep the error and index the buried copy."""
        record = json.dumps(
            {"id": job_id, "error": error, "failed_at": time.time(), "ref": ref, "attempt": attempt}
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key(job_id, "done"), "dead", px=self.done_ms)
        pipe.set(self.key(job_id, "dead"), record, px=self.dead_ms)
        pipe.lpush(f"{self.prefix}dead", record)
        pipe.pexpire(f"{self.prefix}dead", self.dead_ms)
        self._release(keys=[self.key(job_id, "claim")], args=[token], client=pipe)
        self._run("dead", pipe)

    def dead_records(self, limit: int = 1000) -> list[dict[str, Any]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(f"{self.prefix}dead", 0, limit - 1)
        return [json.loads(r) for r in self._run("dead letters", pipe)[0]]

    def forget_dead(self, record: dict[str, Any], *, rerun: bool) -> None:
        """Drop a dead record; with ``rerun`` also clear done/retry so the job runs afresh."""
        job_id = record["id"]
        pipe = self.client.pipeline(transaction=False)
        pipe.lrem(f"{self.prefix}dead", 0, json.dumps(record))
        pipe.delete(self.key(job_id, "dead"))
        if rerun:
            pipe.delete(self.key(job_id, "done"))
            pipe.delete(self.key(job_id, "retry"))
        self._run("dead letters", pipe)

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis: {e}") from e

    def close(self) -> None:
        try:
            self.client.close()
        except redis.RedisError:
            pass
