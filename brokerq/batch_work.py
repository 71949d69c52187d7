"""The Worker's batch side: a thread loop that collects batches, and ``process_batch``.

A mixin of ``brokerq.worker.Worker`` (split from it by concept; same object, same threads):
each worker thread of a batch handler (brokerq.batch) receives up to ``max_size``
deliveries, waiting at most ``max_wait`` after the first, calls the handler once, and
settles every item on its own through the Worker's Settler.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from brokerq.batch import BatchHandler, item_errors
from brokerq.broker import Delivery, Source
from brokerq.middleware import MiddlewareChain
from brokerq.outcome import Failure
from brokerq.ratelimit import RateLimits
from brokerq.settle import Settler, release
from brokerq.timelimit import Slot, exceeded

logger = logging.getLogger("brokerq.worker")

PAUSE_POLL = 0.5  # seconds between two looks at the queue's pause flag


class BatchWork:
    """Batch handling over the Worker's state (attributes set by ``Worker.__init__``)."""

    _source: Source | None
    _stopping: threading.Event
    _paused: threading.Event
    _settler: Settler
    _abandoned_flag: bool
    _failure: BaseException | None
    receive_timeout: float
    rate_limits: RateLimits | None
    time_limit: float | None
    time_limit_grace: float
    middleware: MiddlewareChain

    def stop(self) -> None:
        raise NotImplementedError  # Worker.stop

    def _work_batches(self, slot: Slot, call: BatchHandler) -> None:
        source = self._source
        assert source is not None
        slot.thread_id = threading.get_ident()
        stopping = self._stopping
        max_size, max_wait = call.config.max_size, call.config.max_wait
        while not stopping.is_set() and not slot.abandoned:
            if self._paused.is_set():
                stopping.wait(PAUSE_POLL / 2)
                continue
            try:
                batch = source.receive_many(max_size, self.receive_timeout)
                if batch:
                    until = time.monotonic() + max_wait
                    while len(batch) < max_size and (left := until - time.monotonic()) > 0:
                        batch += source.receive_many(max_size - len(batch), left)
            except Exception as e:
                logger.error("receiving failed, stopping the worker: %s", Failure.of(e))
                self._failure = self._failure or e
                self.stop()
                return
            if stopping.is_set() or self._paused.is_set():
                for delivery in batch:
                    release(source, delivery)
                continue
            if batch:
                self.process_batch(source, call, batch, slot)

    def process_batch(
        self, source: Source, call: BatchHandler, batch: list[Delivery[Any]], slot: Slot
    ) -> None:
        """Handle a batch with one call; settle each item on its own (brokerq.batch)."""
        todo = [d for d in batch if self._settler.settled_before_running(source, d) is None]
        if self.rate_limits is not None:
            for i, d in enumerate(todo):
                if not self.rate_limits.wait(d.message, self._stopping):
                    for rest in todo[i:]:
                        release(source, rest)
                    return
        for d in todo:
            self.middleware.before(d.message)
        items, bad = call.decode([d.message for d in todo])
        for i, e in bad.items():
            self._settler.finish(source, todo[i], e)
        todo = [d for i, d in enumerate(todo) if i not in bad]
        if not todo:
            return
        limit = self.time_limit
        error: BaseException | None = None
        try:
            slot.enter(todo, limit, self.time_limit_grace, call.is_async)
            try:
                call(items, limit)
            finally:
                if slot.leave() and error is None:
                    error = exceeded(limit)
        except BaseException as e:
            error = error or e
        if slot.abandoned or self._abandoned_flag:
            return
        failed = item_errors(error, len(todo))
        for i, d in enumerate(todo):
            self._settler.finish(source, d, failed.get(i))
