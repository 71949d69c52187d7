"""The poll thread: the only code that touches a source's confluent Consumer.

It subscribes to the main topic and its retry topics, consumes batches into the core
``Dispatcher`` (pausing every partition when the dispatcher is full, and a retry partition
until its head record is due), hands records out only as the offset book allows
(brokerq_kafka.offsets), applies settled offsets, commits, and serves rebalance callbacks
(brokerq_kafka.rebalance).
Worker threads never call the consumer: they settle through the book's lock-free deque.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from brokerq.broker import Delivery
from brokerq.dispatch import Dispatcher
from brokerq_kafka import _wire, retrytopics
from brokerq_kafka._errors import translate
from brokerq_kafka._writer import DurableWriter
from brokerq_kafka.config import KqConf
from brokerq_kafka.keyholds import KeyHolds
from brokerq_kafka.offsets import TP, Handle, OffsetBook, PartitionState
from brokerq_kafka.rebalance import KDelivery, Rebalancing
from brokerq_kafka.tracker import PartitionTracker

logger = logging.getLogger(__name__)


class Poller(Rebalancing):
    """Owns the consumer; runs ``run()`` on its own thread until ``stop()``."""

    def __init__(
        self,
        conf: KqConf,
        dispatcher: Dispatcher[KDelivery],
        writer: DurableWriter,
        holds: KeyHolds,
        *,
        batch_size: int = 500,
        room_wait: float = 0.5,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self.conf = conf
        self.hold = hold  # True while the group is paused (brokerq_kafka.control): fetch nothing
        self.topic = conf.topic
        self.dispatcher = dispatcher
        self.writer = writer
        self.holds = holds
        self.book = OffsetBook()
        self.batch_size = batch_size
        self.room_wait = room_wait
        self.failure: BaseException | None = None
        self.lag: dict[TP, int] = {}
        self.missing_at_start = False
        self._stop = threading.Event()
        self._room_paused = False
        self._due_paused: dict[TP, float] = {}
        self._retry_prefix = conf.topic + retrytopics.RETRY_INFIX
        config = conf.consumer_config(on_commit=self._on_commit, error_cb=self._on_client_error)
        config.setdefault("topic.metadata.refresh.interval.ms", 5000)
        strategy = str(config.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy
        try:
            self.consumer = Consumer(config)
        except (KafkaException, ValueError, TypeError) as e:
            raise translate(e, f"kafka consumer config for topic {conf.topic!r}") from e

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = self.consumer
        try:
            self.missing_at_start = retrytopics.prepare(self.conf)
            topics = [self.topic, *retrytopics.retry_topics(self.conf)]
            consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            interval = self.conf.commit_interval
            next_commit = time.monotonic() + interval
            while not self._stop.is_set():
                self._settle()
                n = self._room()
                records = consumer.consume(n, 0.05 if n else 0.1)
                if records:
                    self._accept(records)
                self._resume_due()
                if time.monotonic() >= next_commit:
                    self._commit(list(self.book.states.values()), clean=False, changed=True)
                    self._update_lag()
                    next_commit = time.monotonic() + interval
        except BaseException as e:
            logger.exception("kafka poll thread for %s failed", self.topic)
            self.failure = e
        finally:
            self.dispatcher.close()
            try:
                self.book.apply_done()
                self._commit(list(self.book.states.values()), clean=True, changed=False)
            except Exception:
                logger.exception("final commit for %s failed", self.topic)
            try:
                consumer.close()
            except Exception:
                logger.exception("closing the kafka consumer for %s failed", self.topic)

    # -- records in ----------------------------------------------------------------------------
    def _room(self) -> int:
        """How many records to fetch now; pauses every partition while the dispatcher stays
        full for ``room_wait`` (pausing drops what librdkafka prefetched, so it is kept for
        handlers that are really slow). While ``hold()`` says the group is paused every
        partition stays paused too, and resumes once the dispatcher drained as usual."""
        d = self.dispatcher
        if self.hold is not None and self.hold():
            if not self._room_paused:
                self._room_paused = True
                self._set_paused(True)
            return self.batch_size
        if self._room_paused:
            if len(d) <= d.low_water:
                self._room_paused = False
                self._set_paused(False)
            return self.batch_size
        if d.has_room() or d.wait_room(self.room_wait):
            return self.batch_size  # may overshoot capacity by one batch: fewer, larger fetches
        self._room_paused = True
        self._set_paused(True)
        return self.batch_size

    def _accept(self, records: list[Message]) -> None:
        """Track and decode a consume() batch; hand out what the book allows.

        This runs for every record on the one poll thread, which every worker thread waits
        on, so a plain record (no headers, no crash count, inside the reservation: the
        common case) takes an inlined path: track, build the message, hand out.
        """
        book = self.book
        out: list[KDelivery] = []
        append = out.append
        later: list[tuple[KDelivery, float]] = []
        touched: list[PartitionState] = []
        state: PartitionState | None = None
        tracker: PartitionTracker | None = None
        outstanding_add = None
        prefix = ""
        free_to = -1  # offsets up to this go straight out (reserved, no careful window)
        plain_message = _wire.plain_message
        now = time.time()
        for record in records:
            err = record.error()
            if err is not None:
                self._on_record_error(err)
                continue
            topic, partition, offset = record.topic(), record.partition(), record.offset()
            assert topic is not None and partition is not None and offset is not None
            if tracker is None or tracker.partition != partition or tracker.topic != topic:
                state = book.get((topic, partition))
                if state is None:  # outside the assignment we know: track it anyway
                    book.assign(topic, partition, -1, None)
                    state = book.states[(topic, partition)]
                tracker = state.tracker
                outstanding_add = tracker.outstanding.add
                prefix = tracker.id_prefix
                free_to = -1
                if state.careful_end is None and state.reserved is not None and not state.counts:
                    free_to = state.reserved
            assert state is not None and outstanding_add is not None
            outstanding_add(offset)
            if tracker.high is None or offset >= tracker.high:
                tracker.high = offset + 1
            if offset <= free_to and not state.held and not record.headers():
                append(Delivery(plain_message(record, prefix), Handle(state, offset, None)))
                continue
            try:
                crashes = state.counts.get(offset, 0) if state.counts else 0
                dec = _wire.decode(record, prefix, crashes)
            except (ValueError, UnicodeDecodeError) as e:
                self._poison(record, state, offset, e)
                continue
            delivery = Delivery(dec.message, Handle(state, offset, dec.origin))
            due = dec.due if dec.due is not None and dec.due > now else None
            if due is not None:
                self._pause_until((topic, partition), due)
            if (
                state.careful_end is None
                and not state.held
                and state.reserved is not None
                and offset <= state.reserved
            ):
                if due is None:
                    append(delivery)
                else:
                    later.append((delivery, due))
            else:
                if not state.held:
                    touched.append(state)
                state.held.append((delivery, due))
        for state in touched:
            self._pump(state, out, later)
        self._hand_out(out, later)

    def _pump(
        self, state: PartitionState, out: list[KDelivery], later: list[tuple[KDelivery, float]]
    ) -> None:
        """Release the held items of ``state`` the book allows, committing first if it asks."""
        book = self.book
        while state.held:
            before = (state.reserved, state.careful_out)
            if book.needs_commit(state) and not self._commit(
                [state], clean=False, changed=False, sync=True
            ):
                state.reserved, state.careful_out = before
                return
            got = book.release(state)
            if not got:
                return
            for delivery, due in got:
                if due is None:
                    out.append(delivery)
                else:
                    later.append((delivery, due))

    def _hand_out(self, out: list[KDelivery], later: list[tuple[KDelivery, float]]) -> None:
        d = self.dispatcher
        if not later and not len(self.holds):
            d.put_many(out)  # no key held by a retry: nothing to look at
            return
        retry_prefix = self._retry_prefix
        plain: list[KDelivery] = []
        for delivery in out:
            key = delivery.message.key
            if (
                key is not None
                and delivery.handle.state.tracker.topic.startswith(retry_prefix)
                and self.holds.take(key)
            ):
                d.put(delivery, holds_key=True)  # the retry of a held key: it is the holder
            else:
                plain.append(delivery)
        if plain:
            d.put_many(plain)
        for delivery, due in later:
            key = delivery.message.key
            d.put(delivery, due, holds_key=key is not None and self.holds.take(key))

    def _settle(self) -> None:
        """Apply settled offsets; let out what waited for a careful record or a commit."""
        self.book.apply_done()
        out: list[KDelivery] = []
        later: list[tuple[KDelivery, float]] = []
        for state in self.book.states.values():
            if state.held and state.careful_out is None:
                self._pump(state, out, later)
        if out or later:
            self._hand_out(out, later)
        self.holds.expire(time.time())

    def _poison(self, record: Message, state: PartitionState, offset: int, e: Exception) -> None:
        """A record we cannot decode goes to the dead letters at once."""
        error = f"DecodeError: undecodable kafka record: {e}"
        logger.warning("%s/%d/%d: %s", state.tp[0], state.tp[1], offset, error)
        handle = Handle(state, offset, None)
        self.writer.dead_in_background(
            _wire.raw_message(record),
            error,
            handle.where(),
            _wire.user_headers(_wire.header_list(record.headers())),
            lambda: self.book.settle(handle),
        )

    # -- pausing -------------------------------------------------------------------------------
    def _pause_until(self, tp: TP, due: float) -> None:
        if tp not in self._due_paused:
            self.consumer.pause([TopicPartition(*tp)])
        self._due_paused[tp] = max(due, self._due_paused.get(tp, 0.0))

    def _resume_due(self) -> None:
        if not self._due_paused:
            return
        now = time.time()
        due = [tp for tp, t in self._due_paused.items() if t <= now]
        for tp in due:
            del self._due_paused[tp]
        if due and not self._room_paused:
            self.consumer.resume([TopicPartition(*tp) for tp in due if tp in self.book.states])

    def _set_paused(self, paused: bool) -> None:
        parts = [TopicPartition(*tp) for tp in self.book.states if tp not in self._due_paused]
        if parts:
            (self.consumer.pause if paused else self.consumer.resume)(parts)

    # -- commits -------------------------------------------------------------------------------
    def _commit(
        self, states: list[PartitionState], *, clean: bool, changed: bool, sync: bool | None = None
    ) -> bool:
        """Commit each state's safe position with its metadata; False when the broker refused."""
        points = self.book.commit_points(states, clean=clean, changed_only=changed)
        if not points:
            return True
        offsets = [
            TopicPartition(s.tracker.topic, s.tracker.partition, pos, metadata=meta)
            for s, pos, meta in points
        ]
        try:
            if clean or sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                return True
            logger.warning("kafka commit for %s failed (will retry): %s", self.topic, e)
            return False
        for s, pos, _ in points:
            s.tracker.committed = pos
        return True

    def _update_lag(self) -> None:
        lag: dict[TP, int] = {}
        for tp, state in self.book.states.items():
            try:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                continue
            pos = state.tracker.position()
            if high is not None and high >= 0 and pos is not None:
                lag[tp] = max(0, high - pos)
        self.lag = lag

    # -- driver callbacks ----------------------------------------------------------------------
    def _on_record_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return
        if err.fatal():
            raise KafkaException(err)
        logger.warning("kafka consumer %s: %s", self.topic, err.str())

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            logger.warning("kafka commit for %s failed: %s", self.topic, err.str())

    def _on_client_error(self, err: KafkaError) -> None:
        logger.warning("kafka consumer %s: %s", self.topic, err.str())
