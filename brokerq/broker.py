"""The contracts every backend implements: Producer, DelayProducer, Source, Consumer and Broker.

A backend gives the core a ``Source`` (receive / ack / retry / dead / release); the core's
``Worker`` (brokerq.worker) turns any Source into a ``Consumer`` with concurrency, retries,
middleware and graceful shutdown. The core never imports a driver: backends are looked up by
name through the ``brokerq.brokers`` entry-point group (brokerq.registry).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from brokerq.errors import NotSupported
from brokerq.message import Message
from brokerq.timing import due_after, due_at

if TYPE_CHECKING:
    from brokerq.schedule.store import FireStore

Self = TypeVar("Self", bound="_Closable")
Handle = TypeVar("Handle")


class _Closable(ABC):
    """Context-manager support for anything with ``close()``; close must be idempotent."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Producer(_Closable):
    """Publishes messages for immediate processing (go-queue kq ``Pusher``)."""

    @abstractmethod
    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one message. Must not block on the network; failures are never silent."""

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything pushed so far is acknowledged (raise DeliveryError on failures)."""


class DelayProducer(_Closable):
    """Schedules jobs for a later time (go-queue dq ``Producer``).

    ``delay`` and ``at`` validate their argument once, here (brokerq.timing: a negative delay
    or a past time is a ValueError), and pass a unix due time to the backend's ``schedule``.
    """

    def delay(
        self,
        value: bytes | str,
        delay: float | timedelta,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Run the job ``delay`` seconds from now; return its id (for ``revoke``)."""
        return self.schedule(value, due_after(delay), key=key, headers=headers)

    def at(
        self,
        value: bytes | str,
        when: datetime,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Run the job at ``when`` (an aware datetime, or naive local time); return its id."""
        return self.schedule(value, due_at(when), key=key, headers=headers)

    @abstractmethod
    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Store a job that must not run before unix time ``due``; return its id."""

    @abstractmethod
    def revoke(self, job_id: str) -> bool:
        """Cancel a job that has not run yet; True if a copy was found and removed."""


@dataclass(slots=True)
class Delivery(Generic[Handle]):
    """A message handed out by a Source, with the backend's own handle to ack it later."""

    message: Message
    handle: Handle


class Source(_Closable):
    """The receiving side of a broker. All methods but ``receive`` may be called from any thread.

    Exactly one of ack / retry / dead / release is called for every delivery.
    """

    @abstractmethod
    def receive(self, timeout: float) -> Delivery[Any] | None:
        """The next delivery, or None when nothing arrived within ``timeout`` seconds."""

    @abstractmethod
    def ack(self, delivery: Delivery[Any]) -> None:
        """The handler succeeded: the message is done and must never run again."""

    @abstractmethod
    def retry(self, delivery: Delivery[Any], delay: float, error: str) -> None:
        """The handler failed: deliver again after ``delay`` seconds with ``attempt + 1``."""

    @abstractmethod
    def dead(self, delivery: Delivery[Any], error: str) -> None:
        """Give up: move the message to the dead letters, recording ``error``."""

    @abstractmethod
    def release(self, delivery: Delivery[Any]) -> None:
        """Give back a delivery that was not processed (shutdown); no attempt is counted."""


class Consumer(_Closable):
    """Runs a handler over a stream of messages until stopped."""

    @abstractmethod
    def consume(self, handler: Callable[..., Any]) -> None:
        """Process messages with ``handler`` until ``stop()``; blocks."""

    @abstractmethod
    def stop(self) -> None:
        """Ask ``consume`` to finish in-flight work and return. Safe from any thread or signal."""

    def close(self) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that exhausted its retries, with the error that killed it."""

    message: Message
    error: str
    failed_at: float | None = None
    ref: str = ""  # backend reference (row id, node/job id, topic/partition/offset)


class Broker(_Closable):
    """Builds producers and sources for one broker from its config section.

    Subclasses set ``name`` and ``config_model`` and are registered in the
    ``brokerq.brokers`` entry-point group.
    """

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    @classmethod
    def from_config(cls, config: BaseModel | Mapping[str, Any]) -> Broker:
        """Validate a config section (dict or model) and build the broker."""
        model = (
            config
            if isinstance(config, cls.config_model)
            else cls.config_model.model_validate(config)
        )
        return cls(model)

    @abstractmethod
    def __init__(self, config: Any) -> None: ...

    @abstractmethod
    def producer(self) -> Producer:
        """A producer for immediate messages."""

    def delay_producer(self) -> DelayProducer:
        raise NotSupported(f"the {self.name} broker has no delayed jobs")

    @abstractmethod
    def source(self) -> Source:
        """A new receiving side (one per consumer process)."""

    def worker_options(self) -> dict[str, Any]:
        """Worker settings the config section implies (e.g. kq ``processors`` → ``concurrency``,
        a section-level ``retry``); top-level YAML keys override them."""
        return {}

    @abstractmethod
    def check(self) -> None:
        """Raise ConnectionFailed (naming the endpoint) unless the broker answers."""

    def stats(self) -> dict[str, int]:
        """Counts such as pending, delayed, in_flight, dead (what the backend knows)."""
        raise NotSupported(f"the {self.name} broker keeps no stats")

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Requeue dead letters (all when refs is None); return how many."""
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    def purge_dead(self) -> int:
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    def fire_store(self, namespace: str) -> FireStore:
        """The record of schedule fires for ``namespace`` (brokerq.schedule); one per scheduler."""
        raise NotSupported(f"the {self.name} broker cannot run schedules")
