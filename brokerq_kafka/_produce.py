"""The one "produce, waiting for room up to a deadline" loop every Kafka writer uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from brokerq.errors import DeliveryError
from brokerq_kafka._errors import serving, translate

Report = Callable[[Any, Any], None]


def produce_within(
    producer: Producer,
    deadline: float,
    topic: str,
    value: bytes | str | None,
    key: bytes | str | None = None,
    headers: list[tuple[str, Any]] | None = None,
    *,
    partition: int | None = None,
    on_delivery: Report | None = None,
    what: str = "kafka produce",
) -> None:
    """Hand one record to librdkafka; while its local queue is full, serve delivery reports
    and try again until ``deadline`` (``time.monotonic()`` seconds).

    Raises DeliveryError when the queue is still full at the deadline (the broker is
    unreachable or slower than the writer), MessageTooLarge / ConfigError / DeliveryError
    for what librdkafka refuses at once.
    """
    kwargs: dict[str, Any] = {}
    if headers is not None:
        kwargs["headers"] = headers
    if partition is not None:
        kwargs["partition"] = partition
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError(
                    f"{what} to {topic!r}: local queue still full at the deadline "
                    "(is the broker reachable?)"
                ) from None
            serving(producer.poll, min(0.01, left))
        except KafkaException as e:
            raise translate(e, f"{what} to {topic!r}", DeliveryError) from e
