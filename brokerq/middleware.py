"""Middleware: hooks around handling a message and around pushing one (logging, metrics,
timing, tracing).

``before_*`` hooks run in order, ``after_*`` hooks in reverse. An exception raised inside a
hook is logged and swallowed: a broken metrics exporter must not lose a message.

Producer hooks: a Broker's producers call ``before_push(queue, headers)`` (which may add
headers, e.g. a trace context) and ``after_push(queue, error)`` once the broker accepted or
refused the message. Producers skip both entirely when no middleware overrides them, so
the push fast path stays as fast as before. Two more producer hooks, for metrics, run only
where overridden: ``replica_failed(queue, node, error)`` (dq: one node refused its copy of a
push that may still have succeeded on the others) and ``client_stats(queue, stats)`` (Kafka:
librdkafka's statistics, every ``client_stats_interval`` seconds, only when a middleware
overrides it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from brokerq.errors import DecodeError, Drop
from brokerq.message import Message

logger = logging.getLogger(__name__)

OK, RETRY, DEAD = "ok", "retry", "dead"
T = TypeVar("T")


class Middleware:
    """Override the hooks you need; each default does nothing."""

    def before_process(self, message: Message) -> None:
        """Called in the worker thread just before the handler."""

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        """Called after the handler; ``outcome`` is ``ok``, ``retry`` or ``dead``."""

    def before_push(self, queue: str, headers: dict[str, str]) -> None:
        """Called in the pushing thread before a message is handed to the broker; may add
        ``headers``. ``queue`` is the topic, tube or queue name."""

    def after_push(self, queue: str, error: BaseException | None) -> None:
        """Called once the broker accepted the message (``error`` None) or refused it.
        May run on a backend's own thread (Kafka delivery reports)."""

    client_stats_interval: float = 5.0
    """Seconds between ``client_stats`` calls this middleware wants (the smallest wins)."""

    def client_stats(self, queue: str, stats: Mapping[str, Any]) -> None:
        """A driver's statistics for one producer client of ``queue`` (Kafka: librdkafka's
        statistics JSON, parsed; ``msg_cnt`` / ``msg_size`` = messages / bytes waiting in its
        queue). Runs on the producer's poll thread."""

    def replica_failed(self, queue: str, node: str, error: BaseException) -> None:
        """One replica write of a push failed on ``node`` (dq: a beanstalkd endpoint); the
        push itself may still have succeeded on enough other nodes."""


def _overrides(m: Middleware, name: str) -> bool:
    return getattr(type(m), name) is not getattr(Middleware, name)


class MiddlewareChain:
    """Runs a sequence of middleware with the ordering and exception rules above.

    ``push_hooks`` is False when no middleware has producer hooks: producers then skip them.
    """

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self._before = list(middleware)
        self._after = list(reversed(self._before))
        self.has_before = any(_overrides(m, "before_process") for m in self._before)
        self.has_after = any(_overrides(m, "after_process") for m in self._before)
        self._before_push = [m for m in self._before if _overrides(m, "before_push")]
        self._after_push = [m for m in self._after if _overrides(m, "after_push")]
        self.push_hooks = bool(self._before_push or self._after_push)
        self._client_stats = [m for m in self._before if _overrides(m, "client_stats")]
        self._replica_failed = [m for m in self._before if _overrides(m, "replica_failed")]
        self.stats_interval: float | None = min(
            (m.client_stats_interval for m in self._client_stats), default=None
        )
        """Seconds between client statistics; None: no middleware wants them."""

    def __iter__(self) -> Iterator[Middleware]:
        return iter(self._before)

    def before_push(self, queue: str, headers: Mapping[str, str] | None) -> dict[str, str]:
        """Run the ``before_push`` hooks on a copy of ``headers``; return the copy."""
        out = dict(headers or {})
        for m in self._before_push:
            try:
                m.before_push(queue, out)
            except Exception:
                logger.exception("middleware %s.before_push failed", type(m).__name__)
        return out

    def push(
        self,
        queue: str,
        headers: Mapping[str, str] | None,
        send: Callable[[Mapping[str, str] | None], T],
    ) -> T:
        """``send(headers)`` wrapped in the producer hooks (just ``send`` when there are none).

        For producers that learn the outcome at once (sqlite, dq); Kafka's calls
        ``after_push`` from its delivery reports instead.
        """
        if not self.push_hooks:
            return send(headers)
        headers = self.before_push(queue, headers)
        try:
            result = send(headers)
        except BaseException as e:
            self.after_push(queue, e)
            raise
        self.after_push(queue, None)
        return result

    def after_push(self, queue: str, error: BaseException | None) -> None:
        for m in self._after_push:
            try:
                m.after_push(queue, error)
            except Exception:
                logger.exception("middleware %s.after_push failed", type(m).__name__)

    def client_stats(self, queue: str, stats: Mapping[str, Any]) -> None:
        for m in self._client_stats:
            try:
                m.client_stats(queue, stats)
            except Exception:
                logger.exception("middleware %s.client_stats failed", type(m).__name__)

    def replica_failed(self, queue: str, node: str, error: BaseException) -> None:
        for m in self._replica_failed:
            try:
                m.replica_failed(queue, node, error)
            except Exception:
                logger.exception("middleware %s.replica_failed failed", type(m).__name__)

    def before(self, message: Message) -> None:
        for m in self._before:
            try:
                m.before_process(message)
            except Exception:
                logger.exception("middleware %s.before_process failed", type(m).__name__)

    def after(self, message: Message, outcome: str, error: BaseException | None) -> None:
        for m in self._after:
            try:
                m.after_process(message, outcome, error)
            except Exception:
                logger.exception("middleware %s.after_process failed", type(m).__name__)


class LoggingMiddleware(Middleware):
    """One line per outcome: DEBUG for success, INFO for a retry (its traceback at DEBUG),
    WARNING for a dead letter with its traceback. Each names the message id, the attempt and
    the error as ``Type: message``."""

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        if outcome == OK:
            logger.debug("message %s done (attempt %d)", message.id, message.attempt)
            return
        text = f"{type(error).__name__}: {error}" if error is not None else outcome
        if outcome == RETRY:
            logger.info(
                "message %s failed on attempt %d, will retry: %s",
                message.id,
                message.attempt,
                text,
                exc_info=_traceback(error) if logger.isEnabledFor(logging.DEBUG) else None,
            )
        else:
            expected = isinstance(error, (Drop, DecodeError))  # asked for: no traceback
            logger.warning(
                "message %s dead after attempt %d: %s",
                message.id,
                message.attempt,
                text,
                exc_info=None if expected else _traceback(error),
            )


def _traceback(
    error: BaseException | None,
) -> tuple[type[BaseException], BaseException, TracebackType] | None:
    """``exc_info`` for an error that was raised; None for one only built (a BatchFailed
    item's error): logging would print a bare ``Type: message`` line under the outcome's."""
    if error is None or error.__traceback__ is None:
        return None
    return (type(error), error, error.__traceback__)


@dataclass
class Metrics(Middleware):
    """In-process counters and handling time; read ``snapshot()`` or export them yourself."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    handling_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _started: threading.local = field(default_factory=threading.local, repr=False)

    def before_process(self, message: Message) -> None:
        self._started.t = time.perf_counter()

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        elapsed = time.perf_counter() - getattr(self._started, "t", time.perf_counter())
        with self._lock:
            self.handling_seconds += elapsed
            if outcome == OK:
                self.processed += 1
            else:
                self.failed += 1
                if outcome == RETRY:
                    self.retried += 1
                else:
                    self.dead_lettered += 1

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "processed": self.processed,
                "failed": self.failed,
                "retried": self.retried,
                "dead_lettered": self.dead_lettered,
                "handling_seconds": self.handling_seconds,
            }
