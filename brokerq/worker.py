"""The worker runtime: turns any ``Source`` into a ``Consumer``.

``concurrency`` threads each receive from the source, run middleware and the handler, then
ack, retry or dead-letter. There is no hand-off queue between receiving and handling (a
shared queue cost 5x the throughput): a thread receives only when it is free, so the
prefetch is whatever the source buffers, and every source's buffer is bounded. A slow
handler therefore stops receiving and the backpressure reaches the broker. On ``stop()``
threads stop receiving and ``consume`` waits up to ``shutdown_timeout`` for running
handlers; anything still running then is left unacked, so the broker delivers it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from brokerq.broker import Consumer, Delivery, Source
from brokerq.errors import DecodeError, Drop, Retry
from brokerq.handler import Handler
from brokerq.middleware import DEAD, OK, RETRY, Middleware, MiddlewareChain
from brokerq.retry import RetryPolicy
from brokerq.tracing import default_middleware

logger = logging.getLogger(__name__)


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
        receive_timeout: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._source_arg = source
        self.concurrency = concurrency
        self.retry_policy = retry or RetryPolicy()
        self.middleware = MiddlewareChain([*default_middleware(), *middleware])
        self.shutdown_timeout = shutdown_timeout
        self.receive_timeout = receive_timeout
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._failure: BaseException | None = None

    # -- public -----------------------------------------------------------------------------
    def consume(self, handler: Callable[..., Any] | str) -> None:
        """Process until ``stop()``; returns once in-flight work finished or timed out.

        A source that fails for good (its ``receive`` raises) stops the worker, and the
        error is raised from here after the other threads have finished.
        """
        call = handler if isinstance(handler, Handler) else Handler(handler)
        arg = self._source_arg
        source = arg if isinstance(arg, Source) else arg()
        self._stopping.clear()
        self._abandoned.clear()
        self._failure = None
        threads = [
            threading.Thread(
                target=self._work, args=(source, call), name=f"brokerq-worker-{i}", daemon=True
            )
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        logger.info("worker started: handler=%s concurrency=%d", call.name, self.concurrency)
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self._shutdown(source, threads)
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Stop receiving; safe from any thread and from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- internals --------------------------------------------------------------------------
    def _shutdown(self, source: Source, threads: list[threading.Thread]) -> None:
        self._stopping.set()
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

    def _work(self, source: Source, call: Handler) -> None:
        stopping = self._stopping
        timeout = self.receive_timeout
        while not stopping.is_set():
            try:
                delivery = source.receive(timeout)
            except Exception as e:
                logger.error("receiving failed, stopping the worker: %s", describe(e))
                self._failure = self._failure or e
                stopping.set()
                return
            if delivery is None:
                continue
            if stopping.is_set():
                self._release(source, delivery)
                return
            self.process(source, call, delivery)

    def _release(self, source: Source, delivery: Delivery[Any]) -> None:
        try:
            source.release(delivery)
        except Exception:
            logger.exception("release of message %s failed", delivery.message.id)

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
