"""The receiving contract: ``Delivery`` and ``Source`` (re-exported by brokerq.broker).

A backend gives the core a ``Source`` (receive / ack / retry / dead / release); the core's
``Worker`` (brokerq.worker) turns any Source into a ``Consumer``. Split from brokerq.broker
by concept; import them from either module.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from brokerq._closable import _Closable
from brokerq.message import Message
from brokerq.outcome import Failure

Handle = TypeVar("Handle")


@dataclass(slots=True)
class Delivery(Generic[Handle]):
    """A message handed out by a Source, with the backend's own handle to ack it later.

    ``deadline`` (unix seconds, set by the Worker when handling starts) is the moment past
    which the handler is out of its time limit and grace: a source never renews a lease or
    claim of this delivery past it.
    """

    message: Message
    handle: Handle
    deadline: float | None = None

    def renewable(self, now: float) -> bool:
        """True while the delivery's lease or claim may still be renewed at unix time ``now``."""
        return self.deadline is None or now < self.deadline


class Source(_Closable):
    """The receiving side of a broker. ``receive`` / ``receive_many`` may be called from several
    worker threads at once; ack / retry / dead / release from any thread.

    Exactly one of ack / retry / dead / release is called for every delivery. The Worker
    decides which (brokerq.outcome); a source carries it out and never turns one outcome into
    another: when it cannot (the dead-letter write failed, Redis is down) it raises
    BrokerError and the Worker releases the delivery, keeping its verdict.

    A delivery that comes back after its worker died (lease expired, consumer crashed) has
    ``attempt`` one higher, where the Broker's ``capabilities.counts_redeliveries`` says so.
    """

    @abstractmethod
    def receive(self, timeout: float) -> Delivery[Any] | None:
        """The next delivery, or None when nothing arrived within ``timeout`` seconds."""

    def receive_many(self, max_n: int, timeout: float) -> list[Delivery[Any]]:
        """Up to ``max_n`` deliveries: waits up to ``timeout`` seconds for the first, then takes
        only what is ready at once. Empty when nothing arrived. Backends override it to hand
        out a batch under one lock."""
        first = self.receive(timeout)
        if first is None:
            return []
        out = [first]
        while len(out) < max_n:
            more = self.receive(0.0)
            if more is None:
                break
            out.append(more)
        return out

    @abstractmethod
    def ack(self, delivery: Delivery[Any]) -> None:
        """The handler succeeded: the message is done and must never run again."""

    @abstractmethod
    def retry(self, delivery: Delivery[Any], delay: float, error: Failure) -> None:
        """The handler failed: deliver again after ``delay`` seconds with ``attempt + 1``,
        keeping the message's priority."""

    @abstractmethod
    def dead(self, delivery: Delivery[Any], error: Failure) -> None:
        """Give up: move the message to the dead letters, recording ``error`` (with its
        ``type`` and ``traceback`` where the backend can store them)."""

    @abstractmethod
    def release(self, delivery: Delivery[Any]) -> None:
        """Give back a delivery that was not processed (shutdown); no attempt is counted."""
