"""``FireStore``: what a scheduler needs from a broker, and the fire id that makes it exact.

Exactly once per tick comes from the id, not from a lock: every scheduler of a config computes
the same fire instants (brokerq.schedule.spec), so the same ``fire_id(namespace, name,
fire_time)``, and a backend's ``fire`` enqueues a given id at most once. Schedulers may then run
in any number; leadership (``FireStore.active``) only saves work.

Backends implement this in their own module and hand it out from ``Broker.fire_store``:
``brokerq.embedded.fires`` (sqlite, memory), ``brokerq_beanstalk.fires`` (dq),
``brokerq_kafka.fires`` (kq).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from types import TracebackType

from brokerq.message import Message
from brokerq.schedule.spec import fire_time_text


def fire_id(namespace: str, name: str, fire_time: datetime) -> str:
    """The id of one tick's message: ``sched:<namespace>:<name>:<ISO 8601 UTC>``.

    ``namespace`` is the config's ``name`` (two configs on one broker do not collide);
    the id is also the ``Message.id`` the handler sees, so a handler can deduplicate by it.
    """
    return f"sched:{namespace}:{name}:{fire_time_text(fire_time)}"


class FireStore(ABC):
    """A broker's record of fired ticks for one namespace. Used by one scheduler thread."""

    max_wait: float | None = None
    """Longest sleep between two calls of ``active`` (a backend whose leadership needs polling);
    None: sleep until the next tick or provider sync."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    @abstractmethod
    def last_fire(self, name: str) -> datetime | None:
        """The latest recorded fire instant of schedule ``name`` (aware UTC), or None.

        Raises BrokerError (ConnectionFailed when the broker is unreachable).
        """

    @abstractmethod
    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        """Enqueue ``message`` (whose id is the fire id) unless that id already fired.

        Atomic with recording ``fire_time`` as the last fire of ``name`` (the record only moves
        forward; ``record=False`` for a manual run leaves it alone). Returns False when the id
        had already fired (another scheduler won), True when this call enqueued it. Raises
        BrokerError when the broker cannot be written; nothing is recorded then.
        """

    def active(self) -> bool:
        """Whether this scheduler should fire now (leadership hint; correctness never needs it)."""
        return True

    def close(self) -> None:
        """Release connections. Idempotent."""
        return None

    def __enter__(self) -> FireStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
