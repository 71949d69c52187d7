"""``BeanstalkBroker``: the dq backend behind the ``beanstalk`` entry point.

One face per role: ``producer()`` / ``delay_producer()`` return the dq ``Producer`` (with
this broker's push hooks), ``source(prefetch=)`` a ``BeanstalkSource`` for one consumer.
Admin operations (check, stats in brokerq_beanstalk.admin, dead letters in
brokerq_beanstalk.deadletters) open short-lived connections of their own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from brokerq.broker import Broker, Capabilities, DeadLetter, JobInfo, WorkerInfo
from brokerq.errors import ConnectionFailed
from brokerq_beanstalk import workers
from brokerq_beanstalk.admin import node_states, tube_stats
from brokerq_beanstalk.config import DqConf
from brokerq_beanstalk.control import PauseFlag, RedisRateLimiter
from brokerq_beanstalk.deadletters import DeadLetters
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.jobinfo import lookup
from brokerq_beanstalk.producer import Producer
from brokerq_beanstalk.source import BeanstalkSource

if TYPE_CHECKING:
    from brokerq_beanstalk.fires import BeanstalkFireStore

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
        idempotent_push=True,  # job_id= reserved in Redis (brokerq_beanstalk.unique)
        idempotent_delay=True,
        job_lookup=True,  # brokerq_beanstalk.jobinfo
        pause=True,  # brokerq_beanstalk.control
        dead_letters=True,
    )

    def __init__(self, config: DqConf) -> None:
        self.conf = config
        self._guard: Guard | None = None

    @property
    def queue(self) -> str:
        """The tube the jobs live in (the first node's; nodes normally share one)."""
        return self.conf.beanstalks[0].tube

    @property
    def pause_scope(self) -> str:
        """``tube <tube>``: the flag is kept per tube in Redis (brokerq_beanstalk.control)."""
        return f"tube {self.queue}"

    def _new_guard(self) -> Guard:
        c = self.conf
        return Guard.from_conf(
            c.redis,
            claim_ttl=c.claim_ttl,
            done_ttl=c.done_ttl,
            dead_ttl=c.dead_ttl,
            keep_done=c.keep_done,
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

    # -- job control ------------------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo | None:
        """State, attempt, last error, due / created / finished times of ``job_id`` (its
        caller-chosen id or the id ``delay`` returned), with ``details`` = ``copies``
        (``<endpoint>/<job id>`` → beanstalkd state) and ``guard`` (done mark, claimed,
        claims taken, id reserved); None when unknown or finished more than ``keep_done`` ago
        (brokerq_beanstalk.jobinfo). ConnectionFailed when Redis does not answer."""
        return lookup(self.conf, self.guard, job_id.partition("|")[0])

    @property
    def _pause_flag(self) -> PauseFlag:
        return PauseFlag(self.guard, self.queue)

    def pause(self) -> None:
        """Set the queue's pause flag in Redis: every worker stops starting jobs within
        ``PAUSE_POLL`` seconds; jobs wait in beanstalkd (brokerq_beanstalk.control)."""
        self._pause_flag.pause()

    def resume(self) -> None:
        self._pause_flag.resume()

    def is_paused(self) -> bool:
        """One Redis EXISTS; ConnectionFailed when Redis does not answer."""
        return self._pause_flag.is_paused()

    def rate_limiter(self) -> RedisRateLimiter:
        """Fixed-window counters in Redis shared by every worker (``limits`` library)."""
        return RedisRateLimiter(self._new_guard(), self.conf.redis)

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """A Redis key per worker with a ``ttl`` expiry (brokerq_beanstalk.workers)."""
        workers.beat(self.guard.client, self.conf.redis.prefix, self.queue, info, ttl)

    def workers(self) -> list[WorkerInfo]:
        return workers.live(self.guard.client, self.conf.redis.prefix, self.queue)

    # -- admin ------------------------------------------------------------------------------
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
        return node_states(self.conf)

    def stats(self) -> dict[str, int]:
        """Jobs per state, each job once, then per-node lines.

        A job has a copy on each of ``replicas`` nodes: with one copy per node (replicas
        = nodes) a state's count is the largest over the nodes that answer; with fewer
        replicas than nodes it is the sum divided by ``replicas`` (an estimate). ``dead``
        counts buried copies (a dead job keeps exactly one). ``nodes:up``, then per node
        ``node:<endpoint>:copies`` (its copies in the tube), or
        ``node:<endpoint>:unreachable`` = 1 for a node that does not answer (the
        ``node:<endpoint>:<state>`` form brokerq.metrics exports per node). ``paused``: 1
        while the queue is paused, else 0 (absent when Redis does not answer).
        """
        out = tube_stats(self.conf)
        try:
            out["paused"] = int(self.is_paused())
        except ConnectionFailed as e:
            logger.warning("stats: pause flag unknown: %s", e)
        return out

    @property
    def _dead(self) -> DeadLetters:
        return DeadLetters(self.conf, self.guard)

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """Up to ``limit`` dead letters (``ref`` = ``endpoint/job id``); only those whose ref
        or job id is in ``refs`` when given."""
        return self._dead.letters(limit, refs)

    def jobs(self, state: str, limit: int = 50, offset: int = 0) -> list[JobInfo]:
        """pending / delayed: the next job of each node (beanstalkd's peek shows no more),
        each job once; dead: the dead letters; running: NotSupported (brokerq_beanstalk.listing)."""
        from brokerq_beanstalk.listing import jobs

        return jobs(self.conf, self._dead, state, limit, offset)

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Kick buried jobs (all, or ``refs``: refs or job ids) back at attempt 1."""
        return self._dead.retry(refs)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Delete dead letters (all, or ``refs``: refs or job ids); return how many."""
        return self._dead.purge(refs)
