"""The durable writer behind retry records and dead letters (acks=all, idempotent).

``send`` waits for the broker's acknowledgement (bounded by ``push_timeout``) and raises a
BrokerError otherwise, so a source can tell the Worker it could not carry an outcome out.
A dead letter too large for the dead-letter topic is written again with its value cut to
fit and headers giving the original size and sha256: it never blocks a partition.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from brokerq.errors import BrokerError, DeliveryError, MessageTooLarge
from brokerq.message import Message
from brokerq_kafka import _wire
from brokerq_kafka._errors import serving, translate
from brokerq_kafka._produce import produce_within
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)

#: (value bytes kept, traceback characters kept) for each try at writing a dead letter.
CUTS: tuple[tuple[int | None, int], ...] = (
    (None, 16_384),
    (65_536, 4_096),
    (4_096, 1_024),
    (0, 256),
)


class DurableWriter:
    """One idempotent producer for a source's retry topics and dead-letter topic."""

    def __init__(self, conf: KqConf) -> None:
        self.conf = conf
        self.timeout = float(conf.push_timeout)
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    config = self.conf.writer_config()
                    config.setdefault("message.timeout.ms", int(self.timeout * 1000))
                    try:
                        self._producer = Producer(config)
                    except (KafkaException, ValueError, TypeError) as e:
                        raise translate(e, "kafka retry/dead-letter writer config") from e
        return self._producer

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, Any]],
        partition: int | None = None,
    ) -> None:
        """Write one record and wait for its ack; MessageTooLarge / DeliveryError /
        ConnectionFailed (all BrokerError) when it is refused or not acked in time."""
        producer = self._get()
        deadline = time.monotonic() + self.timeout
        done = threading.Event()
        result: list[KafkaError | None] = []

        def report(err: KafkaError | None, _record: Any) -> None:
            result.append(err)
            done.set()

        produce_within(
            producer,
            deadline,
            topic,
            value,
            key,
            headers,
            partition=partition,
            on_delivery=report,
            what="kafka write",
        )
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError(f"kafka write to {topic!r}: no ack within {self.timeout}s")
            serving(producer.poll, min(0.05, left))
        if result[0] is not None:
            raise translate(KafkaException(result[0]), f"kafka write to {topic!r}", DeliveryError)

    def dead(
        self,
        message: Message,
        failure: str,
        origin: _wire.Origin,
        user: list[tuple[str, Any]] | None = None,
    ) -> None:
        """Write ``message`` to the dead-letter topic, cut to fit when it is too large;
        BrokerError when the topic refuses it anyway or does not ack in time."""
        topic = self.conf.dead_letter_topic
        value = message.value
        cut_from: tuple[int, str] | None = None
        for keep, tb_limit in CUTS:
            if keep is not None and cut_from is None:
                cut_from = (len(value), hashlib.sha256(value).hexdigest())
            body = value if keep is None else value[:keep]
            headers = _wire.dead_letter_headers(
                message,
                failure,
                origin,
                time.time(),
                traceback_limit=tb_limit,
                cut_from=cut_from,
                user=user,
            )
            try:
                self.send(topic, body, message.key, headers)
            except MessageTooLarge as e:
                logger.warning(
                    "dead letter %s too large for %s (%s): cutting it", message.id, topic, e
                )
                continue
            if cut_from is not None:
                logger.warning(
                    "dead letter %s written cut to %d of %d bytes (sha256 %s)",
                    message.id,
                    len(body),
                    cut_from[0],
                    cut_from[1],
                )
            return
        raise MessageTooLarge(f"dead letter {message.id}: refused by {topic!r} even when cut")

    def dead_in_background(
        self,
        message: Message,
        failure: str,
        origin: _wire.Origin,
        user: list[tuple[str, Any]] | None,
        on_done: Callable[[], None],
    ) -> None:
        """``dead`` on a thread of its own (records the poll thread cannot decode); retried
        every few seconds until written, then ``on_done``."""

        def run() -> None:
            while True:
                try:
                    self.dead(message, failure, origin, user)
                except BrokerError as e:
                    logger.error("dead letter %s not written (retrying): %s", message.id, e)
                    time.sleep(2.0)
                    continue
                on_done()
                return

        threading.Thread(target=run, name="brokerq-kafka-dead-letter", daemon=True).start()

    def close(self) -> None:
        producer = self._producer
        if producer is not None:
            left = serving(producer.flush, self.timeout)
            if left:
                logger.error("%d retry/dead-letter record(s) not acknowledged at close", left)
