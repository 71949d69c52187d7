"""Carrying a message's outcome out through its Source, with the verdicts that must survive.

The Worker decides (brokerq.outcome.decide) and a ``Settler`` tells the source: ack, retry
or dead. When the source cannot (it raises: a refused dead-letter write, Redis down), the
delivery is released and the verdict kept by message id; ``settled_before_running`` then
applies it when the message comes again, without running the handler a second time, so
the recorded error stays the handler's. A message delivered more than ``max_attempts``
times without being settled (its handler kills the worker) is dead-lettered there too.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from brokerq.broker import Delivery, Source
from brokerq.middleware import MiddlewareChain
from brokerq.outcome import OK, OUTCOME_OK, RETRY, Failure, Outcome, crashed, decide, poison
from brokerq.retry import RetryPolicy

logger = logging.getLogger(__name__)

VERDICTS_KEPT = 10_000  # verdicts waiting for a redelivery, at most


class Settler:
    """Thread-safe; one per Worker."""

    def __init__(self, policy: RetryPolicy, middleware: MiddlewareChain) -> None:
        self.policy = policy
        self.middleware = middleware
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, Outcome] = OrderedDict()

    @property
    def kept(self) -> bool:
        """True while verdicts wait for a redelivery (rare: the Worker's fast path asks)."""
        return bool(self._verdicts)

    def settled_before_running(self, source: Source, delivery: Delivery[Any]) -> str | None:
        """Settle ``delivery`` without running its handler when a kept verdict or the poison
        rule decides it; return the outcome kind, or None when the handler must run."""
        msg = delivery.message
        if self._verdicts:  # rare: read without the lock first, it runs for every message
            with self._lock:
                verdict = self._verdicts.pop(msg.id, None)
            if verdict is not None:
                return self.carry_out(source, delivery, verdict)
        if msg.attempt > self.policy.max_attempts:
            kind = self.carry_out(source, delivery, poison(msg, self.policy.max_attempts))
            self.middleware.after(msg, kind, crashed(msg, self.policy.max_attempts))
            return kind
        return None

    def finish(self, source: Source, delivery: Delivery[Any], error: BaseException | None) -> str:
        """Decide the outcome of a handling that ended with ``error``, carry it out, run the
        after-hooks; return the outcome kind."""
        if error is None:  # the common case, kept lean
            try:
                source.ack(delivery)
            except Exception:
                self.carry_out(source, delivery, OUTCOME_OK)
            if self.middleware.has_after:
                self.middleware.after(delivery.message, OK, None)
            return OK
        outcome = decide(delivery.message, error, self.policy)
        self.carry_out(source, delivery, outcome)
        self.middleware.after(delivery.message, outcome.kind, error)
        return outcome.kind

    def carry_out(self, source: Source, delivery: Delivery[Any], outcome: Outcome) -> str:
        """Tell the source the outcome. If it cannot, release the delivery and keep the
        verdict for its redelivery."""
        try:
            if outcome.kind == OK:
                source.ack(delivery)
            elif outcome.kind == RETRY:
                assert outcome.failure is not None
                source.retry(delivery, outcome.delay, outcome.failure)
            else:
                assert outcome.failure is not None
                source.dead(delivery, outcome.failure)
        except Exception as e:
            logger.warning(
                "message %s: carrying out %s failed (%s); released, the verdict is kept "
                "for its redelivery",
                delivery.message.id,
                outcome.kind,
                Failure.of(e),
            )
            with self._lock:
                self._verdicts[delivery.message.id] = outcome
                while len(self._verdicts) > VERDICTS_KEPT:
                    self._verdicts.popitem(last=False)
            release(source, delivery)
        return outcome.kind


def release(source: Source, delivery: Delivery[Any]) -> None:
    """Give ``delivery`` back unprocessed; a failure is logged (the broker redelivers anyway)."""
    try:
        source.release(delivery)
    except Exception:
        logger.exception("release of message %s failed", delivery.message.id)
