"""Run a consumer in a background thread for the length of a ``with`` block (no pytest)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from brokerq.broker import Broker, Consumer
from brokerq.worker import Worker

C = TypeVar("C", bound=Consumer)


@contextmanager
def consuming_in_thread(consumer: C, handler: Callable[..., Any]) -> Iterator[C]:
    """Run ``consumer.consume(handler)`` in a thread for the ``with`` body, then stop it.

    Raises RuntimeError when it does not stop within 30 seconds, and re-raises what
    ``consume`` raised (a source that failed for good)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            consumer.consume(handler)
        except BaseException as e:  # surfaced below
            errors.append(e)

    thread = threading.Thread(target=target, name="brokerq-test-consumer", daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the consumer did not stop within 30 s")
        if errors:
            raise errors[0]


@contextmanager
def running(broker: Broker, handler: Callable[..., Any], **options: Any) -> Iterator[Worker]:
    """Run a ``Worker`` (``options`` as its keyword arguments) over a new source of
    ``broker`` in a thread for the ``with`` body; stop it at the end. The worker obeys the
    broker's pause flag (as ``brokerq run`` does) where the broker can pause."""
    options.setdefault("shutdown_timeout", 10.0)
    if broker.capabilities.pause:
        options.setdefault("paused", broker.is_paused)
    with consuming_in_thread(Worker(broker.source, **options), handler) as worker:
        yield worker
