"""The poll thread's rebalance callbacks: what ``assign``, ``revoke`` and ``lost`` do.

A mixin of ``brokerq_kafka.poller.Poller`` (split from it by concept; same thread, same
state): librdkafka calls these inside ``consume()``, on the poll thread, the only one that
touches the consumer. Assigned partitions start from their committed offset (retry topics,
and a main topic created at start, from the beginning) with their offset book restored from
the commit metadata; revoked ones commit what is done first; lost ones are dropped.
"""

from __future__ import annotations

import logging

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from brokerq.broker import Delivery
from brokerq.dispatch import Dispatcher
from brokerq_kafka.offsets import TP, Handle, OffsetBook, PartitionState

logger = logging.getLogger("brokerq_kafka.poller")

KDelivery = Delivery[Handle]


class Rebalancing:
    """Rebalance callbacks over the Poller's state (attributes set by ``Poller.__init__``)."""

    topic: str
    book: OffsetBook
    dispatcher: Dispatcher[KDelivery]
    missing_at_start: bool
    _retry_prefix: str
    _cooperative: bool
    _room_paused: bool
    _due_paused: dict[TP, float]

    def _commit(
        self, states: list[PartitionState], *, clean: bool, changed: bool, sync: bool | None = None
    ) -> bool:
        raise NotImplementedError  # Poller._commit

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as e:
            logger.warning("kafka %s: reading committed offsets failed: %s", self.topic, e)
            committed = [TopicPartition(p.topic, p.partition) for p in partitions]
        start: list[TopicPartition] = []
        for p in committed:
            self.book.assign(p.topic, p.partition, p.offset, p.metadata)
            self._trim_careful(consumer, (p.topic, p.partition))
            fresh = p.offset < 0 and (
                p.topic.startswith(self._retry_prefix)
                or (self.missing_at_start and p.topic == self.topic)
            )
            start.append(
                TopicPartition(p.topic, p.partition, OFFSET_BEGINNING)
                if fresh
                else TopicPartition(p.topic, p.partition)
            )
        if self._cooperative:
            consumer.incremental_assign(start)
        else:
            consumer.assign(start)
        if self._room_paused:
            consumer.pause(partitions)
        else:  # librdkafka keeps a partition's pause across lost + reassigned: clear it
            consumer.resume(partitions)
        logger.info(
            "kafka %s assigned %s", self.topic, [f"{p.topic}[{p.partition}]" for p in partitions]
        )

    def _trim_careful(self, consumer: Consumer, tp: TP) -> None:
        """A dead owner cannot have handed out records past today's end of the log."""
        state = self.book.get(tp)
        if state is None or state.careful_end is None:
            return
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=5)
        except KafkaException:
            return
        if high is not None and high >= 0:
            state.careful_end = min(state.careful_end, high - 1)
        logger.info(
            "kafka %s[%d]: previous owner died; records up to %d go out one at a time",
            tp[0],
            tp[1],
            state.careful_end,
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        states = self._forget(partitions)
        try:
            self.book.apply_done()
            self._commit(states, clean=True, changed=False)
        except Exception:
            logger.exception("commit on revoke for %s failed", self.topic)
        logger.info(
            "kafka %s revoked %s", self.topic, [f"{p.topic}[{p.partition}]" for p in partitions]
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        logger.warning(
            "kafka %s lost %s", self.topic, [f"{p.topic}[{p.partition}]" for p in partitions]
        )

    def _forget(self, partitions: list[TopicPartition]) -> list[PartitionState]:
        """Stop tracking partitions we no longer own; drop their held and buffered records."""
        states = [s for p in partitions if (s := self.book.revoke((p.topic, p.partition)))]
        for p in partitions:
            self._due_paused.pop((p.topic, p.partition), None)
        gone = {id(s) for s in states}
        self.dispatcher.remove(lambda d: id(d.handle.state) in gone)
        return states
