"""``Queue``: go-queue's ``kq.MustNewQueue(conf, handler)``, a ``brokerq.Consumer`` built on
the same Worker and source as ``brokerq run``.

go-queue names stay as documented aliases: ``start()`` is ``consume()``; ``conns`` is the
number of consumer-group members (one Worker each) and ``processors`` their concurrency.
``KqConf.processors`` and ``KqConf.retry`` are worker settings kept for one release: pass
``concurrency=`` / ``retry=`` instead. ``brokerq pause`` pauses a Queue as it does
``brokerq run`` (the group's flag, brokerq_kafka.control).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from brokerq.broker import Consumer
from brokerq.middleware import Middleware
from brokerq.retry import RetryPolicy
from brokerq.worker import DEFAULT_TIME_LIMIT, Worker
from brokerq_kafka.broker import KafkaBroker
from brokerq_kafka.config import KqConf


class Queue(Consumer):
    """Consumes ``conf.topic`` with ``handler``: ``conns`` group members, ``concurrency``
    (default ``conf.processors``) handler threads each."""

    def __init__(
        self,
        conf: KqConf,
        handler: Callable[..., Any] | str,
        *,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
    ) -> None:
        self.conf = conf
        self.handler = handler
        self.broker = KafkaBroker(conf)
        self.workers = [
            Worker(
                self.broker.source,
                concurrency=concurrency or conf.processors,
                retry=retry or conf.retry,
                middleware=middleware,
                shutdown_timeout=shutdown_timeout,
                time_limit=time_limit,
                paused=self.broker.is_paused,
            )
            for _ in range(conf.conns)
        ]

    def consume(self, handler: Callable[..., Any] | str | None = None) -> None:
        """Consume until ``stop()``; blocks, and returns once in-flight work is settled."""
        call = handler if handler is not None else self.handler
        try:
            if len(self.workers) == 1:
                self.workers[0].consume(call)
                return
            threads = [
                threading.Thread(target=w.consume, args=(call,), name=f"brokerq-kq-{i}")
                for i, w in enumerate(self.workers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            self.broker.close()

    start = consume  # go-queue's name

    def stop(self) -> None:
        """Ask every member to finish in-flight work and return; safe from any thread."""
        for w in self.workers:
            w.stop()
