"""go-queue ``dq.Consumer``: ``Consumer(conf).consume(handler)`` blocks until ``stop()``.

A thin face over the core: the Worker runs ``BeanstalkBroker(conf).source`` (the same
source ``brokerq run`` uses) with ``conf.concurrency`` threads and ``conf.retry``.
Unlike go-queue, a job is deleted only after its handler succeeded; failures are retried and
then buried as dead letters; a crashed worker's job runs again elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brokerq.broker import Consumer as BaseConsumer
from brokerq.middleware import Middleware
from brokerq.worker import DEFAULT_TIME_LIMIT, Worker
from brokerq_beanstalk.broker import BeanstalkBroker
from brokerq_beanstalk.config import DqConf


class Consumer(BaseConsumer):
    """Runs ``handler`` over the jobs of every node with ``conf.concurrency`` threads.

    ``time_limit``: seconds a handler may run (None: no limit), as ``Worker`` takes it.
    """

    def __init__(
        self,
        conf: DqConf,
        *,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
    ) -> None:
        self.conf = conf
        self.broker = BeanstalkBroker(conf)
        self._worker = Worker(
            self.broker.source,
            concurrency=conf.concurrency,
            retry=conf.retry,
            middleware=middleware,
            shutdown_timeout=shutdown_timeout,
            time_limit=time_limit,
            paused=self.broker.is_paused,
        )

    def consume(self, handler: Callable[..., Any]) -> None:
        try:
            self._worker.consume(handler)
        finally:
            self.broker.close()

    def stop(self) -> None:
        self._worker.stop()
