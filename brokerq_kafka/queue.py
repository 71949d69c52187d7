"""``Queue``: go-queue's ``kq.MustNewQueue(conf, handler)``, on the core Worker runtime."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from brokerq.middleware import Middleware
from brokerq.worker import Worker
from brokerq_kafka.config import KqConf
from brokerq_kafka.source import KafkaSource

logger = logging.getLogger(__name__)


class Queue:
    """Consumes ``conf.topic`` with ``handler``: ``conns`` consumers, ``processors`` each threads."""

    def __init__(
        self,
        conf: KqConf,
        handler: Callable[..., Any] | str,
        *,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.conf = conf
        self.handler = handler
        self.workers = [
            Worker(
                lambda: KafkaSource(conf),
                concurrency=conf.processors,
                retry=conf.retry,
                middleware=middleware,
                shutdown_timeout=shutdown_timeout,
            )
            for _ in range(conf.conns)
        ]

    def start(self) -> None:
        """Consume until ``stop()``; blocks, and returns once in-flight work is settled."""
        if len(self.workers) == 1:
            self.workers[0].consume(self.handler)
            return
        threads = [
            threading.Thread(target=w.consume, args=(self.handler,), name=f"brokerq-kq-{i}")
            for i, w in enumerate(self.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self) -> None:
        """Ask every consumer to finish in-flight work and return; safe from any thread."""
        for w in self.workers:
            w.stop()
