"""The contracts every backend implements: Producer, DelayProducer, Source, Consumer and Broker.

A backend gives the core a ``Source`` (receive / ack / retry / dead / release); the core's
``Worker`` (brokerq.worker) turns any Source into a ``Consumer`` with concurrency, retries,
middleware and graceful shutdown. The core never imports a driver: backends are looked up by
name through the ``brokerq.brokers`` entry-point group (brokerq.registry).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from brokerq import batch_enqueue as many
from brokerq._closable import _Closable
from brokerq.enqueue import check_job_id, check_max_delay, refuse_options
from brokerq.errors import NotSupported
from brokerq.listing import JobListing
from brokerq.middleware import Middleware, MiddlewareChain
from brokerq.ratelimit import RateLimiter
from brokerq.records import JOB_STATES, Capabilities, DeadLetter, JobInfo, WorkerInfo
from brokerq.source import Delivery, Source
from brokerq.timing import due_after, due_at
from brokerq.tracing import default_middleware

if TYPE_CHECKING:
    from brokerq.schedule.store import FireStore

__all__ = [
    "JOB_STATES",
    "Broker",
    "Capabilities",
    "Consumer",
    "DeadLetter",
    "DelayProducer",
    "Delivery",
    "JobInfo",
    "Producer",
    "Source",
    "WorkerInfo",
    "check_max_delay",
    "refuse_options",
]


class Producer(_Closable):
    """Publishes messages for immediate processing (go-queue kq ``Pusher``)."""

    @abstractmethod
    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        """Queue one message. Must not block on the network; failures are never silent.

        ``job_id``: a caller-chosen id (idempotent enqueue, brokerq.enqueue): DuplicateJob
        while a job with it is live, NotSupported where the backend cannot promise that.
        ``unique_for``: seconds (or a timedelta) the id stays reserved after the job finished. ``priority``: lower
        runs first (beanstalkd's rule, 0..2**32-1); NotSupported where the backend has none.
        ``time_limit``: seconds the handler may run for this message (header
        ``brokerq-time-limit``). ``type``: picks the handler (header ``brokerq-type``).
        """

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything pushed so far is acknowledged (raise DeliveryError on failures)."""


class DelayProducer(_Closable):
    """Schedules jobs for a later time (go-queue dq ``Producer``).

    ``delay`` and ``at`` validate their argument once, here (brokerq.timing: a negative delay
    or a past time is a ValueError; a due time beyond ``max_delay`` seconds from now is a
    ValueError naming the backend's limit), and pass a unix due time to ``schedule``.
    Keyword arguments mean what they mean on ``Producer.push``.
    """

    max_delay: ClassVar[float | None] = None  # seconds ahead the backend can hold; None: no limit

    def delay(
        self,
        value: bytes | str,
        delay: float | timedelta,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """Run the job ``delay`` seconds from now; return its id (for ``revoke``)."""
        return self.schedule(
            value,
            self._checked(due_after(delay)),
            key=key,
            headers=headers,
            job_id=check_job_id(job_id),
            unique_for=unique_for,
            priority=priority,
            time_limit=time_limit,
            type=type,
        )

    def at(
        self,
        value: bytes | str,
        when: datetime,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """Run the job at ``when`` (an aware datetime, or naive local time); return its id."""
        return self.schedule(
            value,
            self._checked(due_at(when)),
            key=key,
            headers=headers,
            job_id=check_job_id(job_id),
            unique_for=unique_for,
            priority=priority,
            time_limit=time_limit,
            type=type,
        )

    def delay_many(
        self, jobs: Iterable[many.DelayedJob | tuple[bytes | str, float | timedelta]]
    ) -> list[many.EnqueueResult]:
        """Many ``delay`` calls in one (brokerq.batch_enqueue): one entry per job, in order,
        its id or the exception that job raised; a failed job never fails the others."""
        return many.enqueue_many(self, jobs, at=False)

    def at_many(
        self, jobs: Iterable[many.DelayedJob | tuple[bytes | str, datetime]]
    ) -> list[many.EnqueueResult]:
        """Many ``at`` calls in one; results as ``delay_many``."""
        return many.enqueue_many(self, jobs, at=True)

    def schedule_many(self, jobs: Sequence[many.ScheduledJob]) -> list[many.EnqueueResult]:
        """Store validated jobs; one id or exception per job, in order. The default calls
        ``schedule`` for each; backends override it to write many per round trip."""
        return many.schedule_each(self, jobs)

    def _checked(self, due: float) -> float:
        return check_max_delay(due, self.max_delay, type(self).__name__)

    @abstractmethod
    def schedule(
        self,
        value: bytes | str,
        due: float,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> str:
        """Store a job that must not run before unix time ``due``; return its id."""

    @abstractmethod
    def revoke(self, job_id: str) -> bool:
        """Cancel a job that has not run yet; True only if it existed and was removed."""


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


class Broker(JobListing, _Closable):
    """Builds producers and sources for one broker from its config section (``jobs``, the
    listing by state, comes from brokerq.listing).

    Subclasses set ``name``, ``section`` (the YAML key that selects them, e.g. ``kq``;
    several brokers may share one section, told apart by its ``backend`` key),
    ``config_model`` and ``capabilities``, and are registered in the ``brokerq.brokers``
    entry-point group. Optional operations raise NotSupported unless a backend overrides them.
    """

    name: ClassVar[str]
    section: ClassVar[str] = "broker"
    section_default: ClassVar[bool] = False  # picked when the section names no ``backend``
    config_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[Capabilities] = Capabilities()

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

    @property
    def queue_name(self) -> str:
        """The queue, topic or tube this broker serves (labels, rate-limit and pause keys)."""
        return str(getattr(self, "queue", "") or self.name)

    @property
    def pause_scope(self) -> str:
        """What ``pause``/``resume`` act on, for people (``queue <name>``; kq says topic and
        consumer group, dq the tube)."""
        return f"queue {self.queue_name}"

    @property
    def middleware(self) -> MiddlewareChain:
        """The middleware whose producer hooks this broker's producers run (tracing by
        default when OpenTelemetry is configured)."""
        chain: MiddlewareChain | None = self.__dict__.get("_middleware")
        if chain is None:
            chain = self.__dict__["_middleware"] = MiddlewareChain(default_middleware())
        return chain

    def add_middleware(self, *middleware: Middleware) -> None:
        """Add producer hooks for producers built from now on (``Middleware.before_push``)."""
        self.__dict__["_middleware"] = MiddlewareChain([*self.middleware, *middleware])

    @abstractmethod
    def producer(self) -> Producer:
        """A producer for immediate messages."""

    def delay_producer(self) -> DelayProducer:
        raise NotSupported(f"the {self.name} broker has no delayed jobs")

    @abstractmethod
    def source(self, prefetch: int | None = None) -> Source:
        """A new receiving side (one per consumer process). ``prefetch``: how many messages it
        may hold beyond those being handled (the Worker passes one computed from its
        concurrency); None: the backend's default."""

    def worker_options(self) -> dict[str, Any]:
        """Deprecated worker settings still found in the config section (e.g. kq
        ``processors``); top-level YAML keys override them. New backends return {}."""
        return {}

    @abstractmethod
    def check(self) -> None:
        """Raise ConnectionFailed (naming the endpoint) unless the broker answers."""

    def check_notes(self) -> list[str]:
        """Things worth telling after a ``check`` that passed (a topic the first push will
        create, a node down that the others cover); ``brokerq check`` prints them."""
        return []

    def stats(self) -> dict[str, int]:
        """Counts such as pending, delayed, in_flight, dead (what the backend knows)."""
        raise NotSupported(f"the {self.name} broker keeps no stats")

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first; only those whose ``ref`` or message id
        is in ``refs`` when given."""
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Requeue dead letters (all when refs is None) at attempt 1; return how many."""
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Delete dead letters (all when refs is None); return how many."""
        raise NotSupported(f"the {self.name} broker keeps no dead letters here")

    # -- job control (issue: idempotent enqueue, status, pause) -------------------------------
    def job(self, job_id: str) -> JobInfo | None:
        """What the broker knows of job ``job_id``; None when it knows nothing of it."""
        raise NotSupported(f"the {self.name} broker cannot look jobs up by id")

    def pause(self) -> None:
        """Stop every worker of this queue from taking new jobs (in-flight ones finish)."""
        raise NotSupported(f"the {self.name} broker cannot pause")

    def resume(self) -> None:
        """Undo ``pause``."""
        raise NotSupported(f"the {self.name} broker cannot pause")

    def is_paused(self) -> bool:
        """True while the queue is paused (False where pausing is not supported)."""
        return False

    def rate_limiter(self) -> RateLimiter:
        """The counter that rate limits share across every worker of this queue."""
        raise NotSupported(f"the {self.name} broker cannot share rate limits between workers")

    # -- live workers ---------------------------------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Record that the worker ``info`` is alive for the next ``ttl`` seconds."""
        raise NotSupported(f"the {self.name} broker keeps no worker heartbeats")

    def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat has not expired."""
        raise NotSupported(f"the {self.name} broker keeps no worker heartbeats")

    def fire_store(self, namespace: str) -> FireStore:
        """The record of schedule fires for ``namespace`` (brokerq.schedule); one per scheduler."""
        raise NotSupported(f"the {self.name} broker cannot run schedules")
