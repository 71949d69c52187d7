"""Schedule fire records of the dq backend (brokerq.schedule.FireStore): Redis + beanstalkd.

A fire is claimed in Redis with ``SET NX`` on a key in the fire id's hash tag (the same tag the
consume-once guard uses for the job), then the job is written with that id to ``replicas``
beanstalkd nodes (``min_written`` acks), then the claim becomes ``done`` and the schedule's
last fire moves forward::

    <prefix>{<fire id>}:fire             "pending <token>" PX lease, then "done" PX done_ttl
    <prefix>sched:<namespace>:<name>:last  microseconds since the epoch (only moves forward)

Another scheduler that finds the claim pending waits for it: ``done`` means the tick is fired
(return False); a claim that expires (its owner died, kill -9) is taken over and the job
written again. The job may then exist twice in beanstalkd, with one id, and the consumers'
guard runs an id once: one run per tick either way. Every command touches one key (Redis
Cluster and proxies accept it).
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import redis

from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError
from brokerq.message import Message, pack
from brokerq.schedule.spec import EPOCH
from brokerq.schedule.store import FireStore
from brokerq_beanstalk._wire import NodeConn
from brokerq_beanstalk.config import DqConf
from brokerq_beanstalk.guard import connect

logger = logging.getLogger(__name__)

LEASE = 5.0
"""Seconds a pending claim lives: how late a tick can be when the scheduler writing it dies."""
WAIT_POLL = 0.02

# KEYS: last; ARGV: microseconds → move the last fire forward only
_FORWARD = (
    "local v = redis.call('get', KEYS[1]) "
    "if (not v) or tonumber(v) < tonumber(ARGV[1]) then "
    "redis.call('set', KEYS[1], ARGV[1]) return 1 end return 0"
)
# KEYS: fire; ARGV: pending value → delete our own pending claim
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_ONE_US = timedelta(microseconds=1)


class BeanstalkFireStore(FireStore):
    """Fires written to the config's beanstalkd nodes, claimed and recorded in its Redis."""

    def __init__(self, conf: DqConf, namespace: str) -> None:
        super().__init__(namespace)
        self._conf = conf
        self._prefix = conf.redis.prefix
        self._redis: Any = None
        self._nodes = [NodeConn(b.endpoint, b.tube) for b in conf.beanstalks]
        self._replicas = max(1, min(conf.replicas, len(self._nodes)))
        self._min_written = max(1, min(conf.min_written, self._replicas))
        self._done_ms = int(conf.done_ttl * 1000)

    # -- keys ----------------------------------------------------------------------------------
    def _fire_key(self, fire_id: str) -> str:
        return f"{self._prefix}{{{fire_id}}}:fire"

    def _last_key(self, name: str) -> str:
        return f"{self._prefix}sched:{self.namespace}:{name}:last"

    def _client(self) -> Any:
        if self._redis is None:
            self._redis = connect(self._conf.redis)
        return self._redis

    def _call(self, what: str, *args: Any) -> Any:
        try:
            return self._client().execute_command(*args)
        except redis.RedisError as e:
            raise ConnectionFailed(f"redis {self._conf.redis.url}: {what}: {e}") from e

    # -- FireStore -----------------------------------------------------------------------------
    def last_fire(self, name: str) -> datetime | None:
        raw = self._call(f"last fire of {name}", "GET", self._last_key(name))
        return None if raw is None else EPOCH + int(raw) * _ONE_US

    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        key = self._fire_key(message.id)
        pending = f"pending {uuid.uuid4().hex}"
        lease_ms = int(LEASE * 1000)
        while True:
            if self._call("claim fire", "SET", key, pending, "NX", "PX", lease_ms):
                break
            state = self._call("read fire", "GET", key)
            if state == b"done":
                return False
            if state is not None:
                time.sleep(WAIT_POLL)  # another scheduler is writing it: wait for its verdict
        try:
            self._write(replace(message, created_at=time.time()), priority)
        except BrokerError:
            try:
                self._call("release fire", "EVAL", _RELEASE, 1, key, pending)
            except BrokerError as e:  # the claim expires by itself
                logger.warning("fire %s: %s", message.id, e)
            raise
        if record:
            us = (fire_time - EPOCH) // _ONE_US
            self._call("record last fire", "EVAL", _FORWARD, 1, self._last_key(name), us)
        self._call("mark fire done", "SET", key, "done", "PX", self._done_ms)
        return True

    def close(self) -> None:
        for node in self._nodes:
            node.close()
        client, self._redis = self._redis, None
        if client is not None:
            client.close()

    # -- beanstalkd ----------------------------------------------------------------------------
    def _write(self, message: Message, priority: int | None) -> None:
        """Put the job on ``replicas`` nodes (sent before any answer is read); DeliveryError
        (or ConnectionFailed when no node answered) unless ``min_written`` acked."""
        body = pack(message)
        nodes = random.sample(self._nodes, self._replicas)
        pri = self._conf.priority if priority is None else priority
        ttr = max(1, math.ceil(self._conf.ttr))
        sent: list[NodeConn] = []
        failed: dict[str, BrokerError] = {}
        for node in nodes:
            try:
                node.send_put(body, pri, 0, ttr)
                sent.append(node)
            except BrokerError as e:
                failed[node.endpoint] = e
        written = 0
        for node in sent:
            try:
                node.read_put()
                written += 1
            except BrokerError as e:
                failed[node.endpoint] = e
        if written >= self._min_written:
            if failed:
                logger.warning("fire %s: copies failed on %s", message.id, ", ".join(failed))
            return
        reasons = "; ".join(f"{ep}: {e}" for ep, e in failed.items())
        text = (
            f"fire {message.id} written to {written} node(s), {self._min_written} needed: {reasons}"
        )
        if written == 0 and all(isinstance(e, ConnectionFailed) for e in failed.values()):
            raise ConnectionFailed(text)
        # the copies written stay: a retry of this fire writes the same id, and the
        # consumers' guard runs an id once
        raise DeliveryError(text)
