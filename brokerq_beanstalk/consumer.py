"""go-queue ``dq.Consumer``: ``Consumer(conf).consume(handler)`` blocks until ``stop()``.

Unlike go-queue, a job is deleted only after its handler succeeded; failures are retried per
``conf.retry`` and then buried as dead letters; a crashed worker's job runs again elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brokerq.broker import Consumer as BaseConsumer
from brokerq.middleware import Middleware
from brokerq.worker import Worker
from brokerq_beanstalk.config import DqConf
from brokerq_beanstalk.guard import Guard
from brokerq_beanstalk.source import BeanstalkSource


def make_source(conf: DqConf) -> BeanstalkSource:
    """A new source (its own connections and Redis client) for ``conf``."""
    guard = Guard.from_conf(
        conf.redis, claim_ttl=conf.claim_ttl, done_ttl=conf.done_ttl, dead_ttl=conf.dead_ttl
    )
    return BeanstalkSource(
        conf.beanstalks,
        guard,
        ttr=conf.ttr,
        priority=conf.priority,
        claim_ttl=conf.claim_ttl,
        prefetch=conf.concurrency * 4,  # the node threads reserve in batches
    )


class Consumer(BaseConsumer):
    """Runs ``handler`` over the jobs of every node with ``conf.concurrency`` threads."""

    def __init__(
        self,
        conf: DqConf,
        *,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.conf = conf
        self._worker = Worker(
            lambda: make_source(conf),
            concurrency=conf.concurrency,
            retry=conf.retry,
            middleware=middleware,
            shutdown_timeout=shutdown_timeout,
        )

    def consume(self, handler: Callable[..., Any]) -> None:
        self._worker.consume(handler)

    def stop(self) -> None:
        self._worker.stop()
