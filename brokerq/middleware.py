"""Middleware: hooks around handling a message (logging, metrics, timing, tracing).

``before_process`` hooks run in order, ``after_process`` hooks in reverse. An exception raised
inside a hook is logged and swallowed: a broken metrics exporter must not lose a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from brokerq.message import Message

logger = logging.getLogger(__name__)

OK, RETRY, DEAD = "ok", "retry", "dead"


class Middleware:
    """Override the hooks you need; each default does nothing."""

    def before_process(self, message: Message) -> None:
        """Called in the worker thread just before the handler."""

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        """Called after the handler; ``outcome`` is ``ok``, ``retry`` or ``dead``."""


class MiddlewareChain:
    """Runs a sequence of middleware with the ordering and exception rules above."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self._before = list(middleware)
        self._after = list(reversed(self._before))

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
    """Logs each outcome at DEBUG (success) or WARNING (retry, dead)."""

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        if outcome == OK:
            logger.debug("message %s done (attempt %d)", message.id, message.attempt)
        else:
            logger.warning(
                "message %s %s after attempt %d: %s", message.id, outcome, message.attempt, error
            )


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
