"""The worker runtime: turns any ``Source`` into a ``Consumer``.

One dispatcher (the thread that calls ``consume``) receives deliveries into a bounded queue;
``concurrency`` threads take them, run middleware and the handler, then ack, retry or
dead-letter. The bounded queue is the prefetch: a slow handler stops the dispatcher from
receiving more, so backpressure reaches the broker. On ``stop()`` the dispatcher stops
receiving, releases what was prefetched but not started, and waits up to
``shutdown_timeout`` for running handlers; anything still running is left unacked, so the
broker delivers it again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from brokerq.broker import Consumer, Delivery, Source
from brokerq.errors import DecodeError, Drop, Retry
from brokerq.handler import Handler
from brokerq.middleware import DEAD, OK, RETRY, Middleware, MiddlewareChain
from brokerq.retry import RetryPolicy

logger = logging.getLogger(__name__)

_STOP = object()


def describe(error: BaseException) -> str:
    """``Type: message``, the form recorded with retries and dead letters."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Worker(Consumer):
    """Runs a handler over a Source with concurrency, retries, middleware and graceful stop."""

    def __init__(
        self,
        source: Source | Callable[[], Source],
        *,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
        prefetch: int | None = None,
        receive_timeout: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._source_arg = source
        self.concurrency = concurrency
        self.retry_policy = retry or RetryPolicy()
        self.middleware = MiddlewareChain(middleware)
        self.shutdown_timeout = shutdown_timeout
        self.prefetch = prefetch if prefetch is not None else concurrency
        self.receive_timeout = receive_timeout
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._running = False

    # -- public -----------------------------------------------------------------------------
    def consume(self, handler: Callable[..., Any] | str) -> None:
        """Process until ``stop()``; returns once in-flight work finished or timed out."""
        call = handler if isinstance(handler, Handler) else Handler(handler)
        source = (
            self._source_arg()
            if callable(self._source_arg) and not isinstance(self._source_arg, Source)
            else self._source_arg
        )
        assert isinstance(source, Source)
        self._stopping.clear()
        self._abandoned.clear()
        self._running = True
        work: queue.Queue[Any] = queue.Queue(maxsize=max(1, self.prefetch))
        threads = [
            threading.Thread(
                target=self._work,
                args=(source, call, work),
                name=f"brokerq-worker-{i}",
                daemon=True,
            )
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        logger.info("worker started: handler=%s concurrency=%d", call.name, self.concurrency)
        try:
            self._dispatch(source, work)
        finally:
            self._shutdown(source, work, threads)
            self._running = False

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- internals --------------------------------------------------------------------------
    def _dispatch(self, source: Source, work: queue.Queue[Any]) -> None:
        while not self._stopping.is_set():
            delivery = source.receive(self.receive_timeout)
            if delivery is None:
                continue
            while True:
                try:
                    work.put(delivery, timeout=0.2)
                    break
                except queue.Full:
                    if self._stopping.is_set():
                        self._release(source, delivery)
                        return

    def _shutdown(
        self, source: Source, work: queue.Queue[Any], threads: list[threading.Thread]
    ) -> None:
        # Give back what was prefetched but not started.
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._release(source, item)
        for _ in threads:
            work.put(_STOP)
        deadline = time.monotonic() + self.shutdown_timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in threads)
        if alive:
            self._abandoned.set()
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

    def _release(self, source: Source, delivery: Delivery[Any]) -> None:
        try:
            source.release(delivery)
        except Exception:
            logger.exception("release of message %s failed", delivery.message.id)

    def _work(self, source: Source, call: Handler, work: queue.Queue[Any]) -> None:
        while True:
            item = work.get()
            if item is _STOP:
                return
            self.process(source, call, item)

    def process(self, source: Source, call: Handler, delivery: Delivery[Any]) -> str:
        """Handle one delivery and settle it with the source; return the outcome."""
        msg = delivery.message
        policy = self.retry_policy
        if msg.attempt > policy.max_attempts:
            # Redelivered after workers died holding it: a poison job must not loop forever.
            poison = RuntimeError(
                f"delivered {msg.attempt} times without being settled "
                f"(max_attempts={policy.max_attempts}): workers died while handling it"
            )
            return self._settle(source, delivery, DEAD, 0.0, poison)
        self.middleware.before(msg)
        error: BaseException | None = None
        delay = 0.0
        try:
            call(msg)
            outcome = OK
        except (Drop, DecodeError) as e:
            error, outcome = e, DEAD
        except Retry as e:
            error = e
            outcome = RETRY if policy.should_retry(msg.attempt) else DEAD
            delay = e.after if e.after is not None else policy.delay(msg.attempt)
        except Exception as e:
            error = e
            outcome = RETRY if policy.should_retry(msg.attempt) else DEAD
            delay = policy.delay(msg.attempt)
        except BaseException:
            self._release(source, delivery)
            raise
        if self._abandoned.is_set():
            return outcome  # shutdown gave up on us; the broker will redeliver
        self._settle(source, delivery, outcome, delay, error)
        self.middleware.after(msg, outcome, error)
        return outcome

    def _settle(
        self,
        source: Source,
        delivery: Delivery[Any],
        outcome: str,
        delay: float,
        error: BaseException | None,
    ) -> str:
        """Tell the source how it ended; a failure here only means the broker redelivers."""
        try:
            if outcome == OK:
                source.ack(delivery)
            elif outcome == RETRY:
                source.retry(delivery, delay, describe(error))  # type: ignore[arg-type]
            else:
                source.dead(delivery, describe(error))  # type: ignore[arg-type]
        except Exception:
            logger.exception(
                "settling message %s as %s failed; it will be redelivered",
                delivery.message.id,
                outcome,
            )
        return outcome
