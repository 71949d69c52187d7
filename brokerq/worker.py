"""The worker runtime: turns any ``Source`` into a ``Consumer``.

``concurrency`` threads each receive from the source, run middleware and the handler, then
carry out the outcome that ``brokerq.outcome.decide`` gives (ack, retry or dead). There is
no hand-off queue between receiving and handling (a shared queue cost 5x the throughput):
a thread receives only when it is free, so the prefetch is what the source buffers. The
Worker computes that prefetch from its concurrency and passes it to ``broker.source``.

Fate rules (the Worker decides, the Source carries it out):

- A handler that raises anything, ``SystemExit`` included, has failed that message: the
  thread lives on. Only the worker's own stop ends a thread.
- When the source cannot carry an outcome out (it raises), the delivery is released and
  the verdict remembered by message id: when the message comes again the same verdict is
  applied without running the handler, and the recorded error stays the handler's.
- A message delivered more than ``max_attempts`` times without being settled (its handler
  kills the process) is dead-lettered as ``WorkerCrashed`` without running.
- Time limits (brokerq.timelimit): past its limit a handler is interrupted; past limit +
  grace its thread is abandoned, the delivery failed with TimeLimitExceeded, and a fresh
  thread keeps ``concurrency`` at N.

Job control: with ``paused`` (e.g. ``broker.is_paused``, polled every ``PAUSE_POLL``
seconds) threads stop starting handlers while the queue is paused and give back what they
received; with ``rate_limits`` a message over the limit waits before its handler starts
(brokerq.ratelimit); a ``Router`` picks the handler by job type (brokerq.routing).

On ``stop()`` threads stop receiving and ``consume`` waits up to ``shutdown_timeout`` for
running handlers; anything still running then is left unacked, so the broker delivers it again.
"""

from __future__ import annotations

import gc
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from brokerq.batch import BatchHandler, batch_item_type, item_errors
from brokerq.broker import Consumer, Delivery, Source
from brokerq.handler import Handler
from brokerq.headers import time_limit_of
from brokerq.middleware import Middleware, MiddlewareChain
from brokerq.outcome import DEAD, OK, Failure, decide
from brokerq.ratelimit import RateLimits
from brokerq.retry import RetryPolicy
from brokerq.routing import Router
from brokerq.settle import Settler, release
from brokerq.timelimit import Slot, Watchdog, exceeded
from brokerq.tracing import default_middleware

logger = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT = 30 * 60.0
PAUSE_POLL = 0.5  # seconds between two looks at the queue's pause flag


def describe(error: BaseException) -> str:
    """``Type: message``, the form recorded with retries and dead letters."""
    return str(Failure.of(error))


def prefetch_for(concurrency: int) -> int:
    """Messages a source may hold beyond those being handled: enough to keep every thread
    busy between round trips, few enough that another process can take the rest."""
    return max(2, concurrency * 2)


class Worker(Consumer):
    """Runs a handler over a Source with concurrency, retries, time limits, middleware and
    graceful stop.

    ``source``: a Source, or a factory such as ``broker.source`` (called with
    ``prefetch=`` when it accepts it). ``time_limit``: seconds a handler may run (None: no
    limit); a message's ``brokerq-time-limit`` header overrides it. ``time_limit_grace``:
    seconds past the limit before a handler that could not be interrupted is abandoned.
    """

    def __init__(
        self,
        source: Source | Callable[..., Source],
        *,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
        receive_timeout: float = 0.5,
        prefetch: int | None = None,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
        time_limit_grace: float = 5.0,
        paused: Callable[[], bool] | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if time_limit is not None and time_limit <= 0:
            raise ValueError("time_limit must be positive (or None for no limit)")
        self._source_arg = source
        self.concurrency = concurrency
        self.prefetch = prefetch if prefetch is not None else prefetch_for(concurrency)
        self.retry_policy = retry or RetryPolicy()
        self.middleware = MiddlewareChain([*default_middleware(), *middleware])
        self.shutdown_timeout = shutdown_timeout
        self.receive_timeout = receive_timeout
        self.time_limit = time_limit
        self.time_limit_grace = time_limit_grace
        self._is_paused = paused
        self._paused = threading.Event()
        self.rate_limits = rate_limits
        self._stopping = threading.Event()
        self._abandoned_flag = False  # shutdown gave up on running handlers
        self._failure: BaseException | None = None
        self._settler = Settler(self.retry_policy, self.middleware)
        self._max_attempts = self.retry_policy.max_attempts
        self._lock = threading.Lock()
        self._workers: list[tuple[threading.Thread, Slot]] = []
        self._source: Source | None = None
        self._call: Handler | Router | BatchHandler | None = None

    # -- public -----------------------------------------------------------------------------
    def consume(self, handler: Callable[..., Any] | str | Router | BatchHandler) -> None:
        """Process until ``stop()``; returns once in-flight work finished or timed out.

        A source that fails for good (its ``receive`` raises) stops the worker, and the
        error is raised from here after the other threads have finished.
        """
        call: Handler | Router | BatchHandler
        if isinstance(handler, (Handler, Router, BatchHandler)):
            call = handler
        elif not isinstance(handler, str) and batch_item_type(handler) is not None:
            call = BatchHandler(handler)
        else:
            call = Handler(handler)
        source = self._open_source()
        self._source, self._call = source, call
        # Everything alive now (modules, config, clients) lives as long as the worker: move
        # it out of the collector's reach, so the collections that the per-message garbage
        # triggers stop re-scanning it (~1 us a message on a Kafka stream). CPython's
        # gc.freeze; objects created later are collected as usual.
        gc.freeze()
        self._stopping.clear()
        self._abandoned_flag = False
        self._failure = None
        self._workers = []
        self._watch_pause()  # a worker started while the queue is paused starts nothing
        for _ in range(self.concurrency):
            self._spawn()
        watchdog = Watchdog(self._busy_slots, self.time_limit_grace, self._abandon)
        watchdog.start()
        logger.info("worker started: handler=%s concurrency=%d", call.name, self.concurrency)
        try:
            while not self._stopping.wait(PAUSE_POLL if self._is_paused else 0.5):
                self._watch_pause()
        finally:
            watchdog.stop()
            self._shutdown(source)
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Stop receiving; safe from any thread and from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def paused(self) -> bool:
        """True while the queue's pause flag was last seen set."""
        return self._paused.is_set()

    def _watch_pause(self) -> None:
        if self._is_paused is None:
            return
        try:
            now_paused = self._is_paused()
        except Exception as e:  # the flag's store is down: keep the last known state
            logger.warning("cannot read the pause flag: %s", describe(e))
            return
        if now_paused and not self._paused.is_set():
            logger.info("queue paused: no new handler starts until it is resumed")
            self._paused.set()
        elif not now_paused and self._paused.is_set():
            logger.info("queue resumed")
            self._paused.clear()

    @property
    def in_flight(self) -> int:
        """Handlers running now."""
        return sum(len(s.deliveries) for s in self._busy_slots())

    # -- threads ----------------------------------------------------------------------------
    def _open_source(self) -> Source:
        arg = self._source_arg
        if isinstance(arg, Source):
            return arg
        try:
            accepts = "prefetch" in inspect.signature(arg).parameters
        except (TypeError, ValueError):
            accepts = False
        return arg(prefetch=self.prefetch) if accepts else arg()

    def _spawn(self) -> None:
        slot = Slot()
        with self._lock:
            name = f"brokerq-worker-{len(self._workers)}"
            thread = threading.Thread(target=self._work, args=(slot,), name=name, daemon=True)
            self._workers.append((thread, slot))
        thread.start()

    def _busy_slots(self) -> list[Slot]:
        """Slots of the threads that count towards ``concurrency`` (not abandoned)."""
        with self._lock:
            return [slot for _, slot in self._workers if not slot.abandoned]

    def _abandon(self, slot: Slot, deliveries: list[Delivery[Any]]) -> None:
        """The watchdog gave up on a handler: fail its deliveries, replace its thread."""
        assert self._source is not None
        for delivery in deliveries:
            msg = delivery.message
            error = exceeded(time_limit_of(msg.headers) or self.time_limit)
            outcome = decide(msg, error, self.retry_policy)
            self._settler.carry_out(self._source, delivery, outcome)
            self.middleware.after(msg, outcome.kind, error)
        if not self._stopping.is_set():
            self._spawn()

    def _shutdown(self, source: Source) -> None:
        self._stopping.set()
        deadline = time.monotonic() + self.shutdown_timeout
        with self._lock:
            threads = [t for t, slot in self._workers if not slot.abandoned]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in threads)
        if alive:
            self._abandoned_flag = True
            logger.warning(
                "%d handler(s) still running after shutdown_timeout=%.1fs; "
                "their messages are not acked and will be delivered again",
                alive,
                self.shutdown_timeout,
            )
        try:
            source.close()
        except Exception:
            logger.exception("closing the source failed")
        logger.info("worker stopped")

    def _work(self, slot: Slot) -> None:
        source, call = self._source, self._call
        assert source is not None and call is not None
        if isinstance(call, BatchHandler):
            self._work_batches(slot, call)
            return
        slot.thread_id = threading.get_ident()
        stopping = self._stopping
        is_stopping, is_paused = stopping.is_set, self._paused.is_set
        receive, process = source.receive, self.process
        timeout = self.receive_timeout
        while not is_stopping() and not slot.abandoned:
            if is_paused():
                stopping.wait(PAUSE_POLL / 2)
                continue
            try:
                delivery = receive(timeout)
            except Exception as e:
                logger.error("receiving failed, stopping the worker: %s", describe(e))
                self._failure = self._failure or e
                stopping.set()
                return
            if delivery is None:
                continue
            if is_stopping() or is_paused():
                release(source, delivery)  # received just before a stop or a pause
                continue
            process(source, call, delivery, slot)

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
                logger.error("receiving failed, stopping the worker: %s", describe(e))
                self._failure = self._failure or e
                stopping.set()
                return
            if stopping.is_set() or self._paused.is_set():
                for delivery in batch:
                    release(source, delivery)
                continue
            if batch:
                self.process_batch(source, call, batch, slot)

    # -- one message, one batch -------------------------------------------------------------
    def process(
        self,
        source: Source,
        call: Handler | Router,
        delivery: Delivery[Any],
        slot: Slot | None = None,
    ) -> str:
        """Handle one delivery and settle it with the source; return the outcome kind."""
        msg = delivery.message
        settler = self._settler
        if settler.kept or msg.attempt > self._max_attempts:
            settled = settler.settled_before_running(source, delivery)
            if settled is not None:
                return settled
        if self.rate_limits is not None and not self.rate_limits.wait(msg, self._stopping):
            release(source, delivery)  # stopped while waiting for the rate limit
            return "released"
        slot = slot or Slot()
        limit = (msg.headers and time_limit_of(msg.headers)) or self.time_limit
        middleware = self.middleware
        if middleware.has_before:
            middleware.before(msg)
        error: BaseException | None = None
        try:
            handler = call.pick(msg) if isinstance(call, Router) else call
            slot.enter([delivery], limit, self.time_limit_grace, handler.is_async)
            try:
                direct = handler.direct
                if direct is not None:
                    direct(msg)
                else:
                    handler(msg, limit)
            finally:
                if slot.leave() and error is None:
                    error = exceeded(limit)
        except BaseException as e:  # SystemExit too: a failure of this message, not of us
            error = error or e
        if slot.abandoned or self._abandoned_flag:
            return DEAD  # the watchdog or shutdown settled (or gave up on) this delivery
        if error is None and not middleware.has_after:
            try:  # the common case: one ack, nothing else to run
                source.ack(delivery)
                return OK
            except Exception:
                pass  # the general path keeps the verdict and releases the delivery
        return settler.finish(source, delivery, error)

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
