"""Writes dead letters to ``<topic>.dlq`` and says when the write is acknowledged.

A dead letter finishes its offset only after the dead-letter topic acknowledged it, so a
crash between the two can duplicate a dead letter but never lose the message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka import Producer as _KafkaProducer

from brokerq.errors import DeliveryError
from brokerq.message import Message
from brokerq_kafka import _wire
from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf
from brokerq_kafka.tracker import PartitionTracker

logger = logging.getLogger(__name__)


class DeadLetterWriter:
    """A durable producer for the dead-letter topic, created on first use."""

    def __init__(self, conf: KqConf, timeout: float) -> None:
        self.conf = conf
        self.topic = conf.dead_letter_topic
        self.timeout = timeout
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    config = self.conf.common_config()
                    config.update({"acks": "all", "enable.idempotence": True})
                    config.update(self.conf.client_config)
                    try:
                        self._producer = _KafkaProducer(config)
                    except (KafkaException, ValueError, TypeError) as e:
                        raise translate(e, f"kafka dead-letter producer for {self.topic!r}") from e
        return self._producer

    def _produce(
        self,
        message: Message,
        error: str,
        tracker: PartitionTracker,
        offset: int,
        report: Callable[[Any, Any], None],
        raw_headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        headers = _wire.dead_letter_headers(
            message, error, tracker.topic, tracker.partition, offset, time.time()
        )
        if raw_headers:
            headers = [h for h in raw_headers if not h[0].startswith(_wire.PREFIX)] + headers
        producer = self._get()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                producer.produce(
                    self.topic, message.value, message.key, headers=headers, on_delivery=report
                )
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise DeliveryError(f"kafka dead-letter queue {self.topic!r} is full") from None
                producer.poll(0.01)
            except KafkaException as e:
                raise translate(e, f"kafka dead letter to {self.topic!r}", DeliveryError) from e

    def write(self, message: Message, error: str, tracker: PartitionTracker, offset: int) -> None:
        """Write one dead letter and wait for the broker's ack (DeliveryError otherwise)."""
        result: list[Any] = []
        done = threading.Event()

        def report(err: Any, record: Any) -> None:
            result.append(err)
            done.set()

        self._produce(message, error, tracker, offset, report)
        self._producer.flush(self.timeout)
        if not done.wait(0.5 if result else max(0.5, self.timeout / 10)):
            raise DeliveryError(
                f"kafka dead letter to {self.topic!r}: no acknowledgement within {self.timeout}s"
            )
        if result[0] is not None:
            raise DeliveryError(f"kafka dead letter to {self.topic!r} failed: {result[0].str()}")

    def write_async(
        self,
        message: Message,
        error: str,
        tracker: PartitionTracker,
        offset: int,
        on_done: Callable[[], None],
        raw_headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        """Write without waiting (poll thread); ``on_done`` runs once acknowledged, retrying."""

        def report(err: Any, record: Any) -> None:
            if err is None:
                on_done()
                return
            logger.error("dead letter to %s failed (retrying): %s", self.topic, err.str())
            self.write_async(message, error, tracker, offset, on_done, raw_headers)

        self._produce(message, error, tracker, offset, report, raw_headers)

    def poll(self) -> None:
        """Serve delivery reports (called by the poll thread)."""
        if self._producer is not None:
            self._producer.poll(0)

    def close(self) -> None:
        if self._producer is not None:
            left = self._producer.flush(self.timeout)
            if left:
                logger.error("%d dead letter(s) to %s not acknowledged at close", left, self.topic)
