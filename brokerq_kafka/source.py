"""``KafkaSource``: at-least-once Kafka consumption for the core Worker.

Thread model: the confluent Consumer is used by one internal poll thread only. It fetches
batches into a bounded buffer (pausing the partitions when the buffer is full, so a slow
handler never stops it polling), applies finished offsets handed over by other threads,
and commits. ``receive`` pops from the buffer (or the retry heap); ack / retry / dead /
release may come from any thread.

Commit rule: a partition's offset is committed only up to its lowest unfinished offset
(see ``tracker``), periodically, and synchronously on revoke and close. Retried and
released messages stay unfinished, so a crash redelivers them; a dead letter counts as
finished only once the dead-letter topic acknowledged it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from brokerq.broker import Delivery, Source
from brokerq.errors import BrokerError, DeliveryError
from brokerq.message import build_message
from brokerq_kafka import _wire
from brokerq_kafka._deadletter import DeadLetterWriter
from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf
from brokerq_kafka.tracker import PartitionTracker

logger = logging.getLogger(__name__)

TP = tuple[str, int]
_ID, _ATTEMPT, _TRANSPORT = _wire.ID, _wire.ATTEMPT, _wire.TRANSPORT
_make_message = build_message


class Handle:
    """Where a delivery came from: its partition's tracker (one per assignment) and offset."""

    __slots__ = ("offset", "tracker")

    def __init__(self, tracker: PartitionTracker, offset: int) -> None:
        self.tracker = tracker
        self.offset = offset

    def __repr__(self) -> str:
        return f"{self.tracker.topic}/{self.tracker.partition}/{self.offset}"


KDelivery = Delivery[Handle]


class KafkaSource(Source):
    """The receiving side of one consumer-group member (go-queue kq ``Queue`` internals)."""

    def __init__(
        self,
        conf: KqConf,
        *,
        buffer_size: int | None = None,
        batch_size: int = 1000,
        room_wait: float = 0.5,
        dead_letter_timeout: float = 30.0,
    ) -> None:
        self.conf = conf
        self.topic = conf.topic
        self.key_ordering = conf.key_ordering
        self.buffer_size = buffer_size or max(2000, 100 * conf.processors)
        self.batch_size = batch_size
        self.room_wait = room_wait
        self.commit_interval = conf.commit_interval
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # receivers wait for work
        self._room = threading.Condition(lock)  # the poll thread waits for buffer space
        self._low_water = self.buffer_size // 2
        self._want_room = False
        # Polled, not handed out: raw records with their partition's tracker; receive decodes
        # them, so the poll thread only tracks and the short-lived Message objects die young.
        self._buffer: deque[tuple[Any, PartitionTracker]] = deque()
        self._lock_free = not self.key_ordering  # receive may pop the buffer without the lock
        self._ready: deque[KDelivery] = deque()  # handed back or unblocked; key already held
        self._delayed: list[tuple[float, int, KDelivery]] = []  # retries, by due time
        self._seq = itertools.count()
        self._keys: dict[Hashable, deque[KDelivery]] = {}  # key in flight -> waiting same-key
        self._done: deque[Handle] = deque()  # finished, for the poll thread
        self._trackers: dict[TP, PartitionTracker] = {}  # current assignment (poll thread)
        self._lag: dict[TP, int] = {}
        self._paused = False
        self._unpaused: list[TopicPartition] = []  # assigned while paused
        self._closing = threading.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        config = conf.consumer_config()
        config["on_commit"] = self._on_commit
        config["error_cb"] = self._on_client_error
        try:
            self._consumer = Consumer(config)
        except (KafkaException, ValueError, TypeError) as e:
            raise translate(e, f"kafka consumer config for topic {conf.topic!r}") from e
        self._dlq = DeadLetterWriter(conf, dead_letter_timeout)

    # -- Source API ----------------------------------------------------------------------------
    def receive(self, timeout: float) -> KDelivery | None:
        # Fast path, no lock: nothing handed back, no retries due, no key ordering, and the
        # poll thread is not waiting for room. ``popleft`` is atomic, so each buffered
        # record goes to exactly one receiver (``_drop`` takes them out the same way).
        if (
            self._lock_free
            and self._thread is not None
            and not self._ready
            and not self._delayed
            and not self._want_room
            and self._failure is None
            and not self._closed
        ):
            try:
                record, tracker = self._buffer.popleft()
            except IndexError:
                pass
            else:
                delivery = self._decode(record, tracker)
                if delivery is not None:
                    return delivery
        return self._receive(timeout)

    def _receive(self, timeout: float) -> KDelivery | None:
        if self._thread is None:
            self._start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._failure is not None:
                    raise BrokerError(f"kafka consumer for {self.topic!r} failed: {self._failure}")
                if self._closed:
                    return None
                if self._ready:
                    return self._ready.popleft()
                now = time.monotonic()
                if self._delayed and self._delayed[0][0] <= now:
                    return heapq.heappop(self._delayed)[2]
                buffer = self._buffer
                if self._want_room and len(buffer) <= self._low_water:
                    self._want_room = False
                    self._room.notify()
                while buffer:
                    delivery = self._decode(*buffer.popleft())
                    if delivery is None:
                        continue
                    key = delivery.message.key
                    if self.key_ordering and key is not None:
                        waiting = self._keys.get(key)
                        if waiting is not None:
                            waiting.append(delivery)
                            continue
                        self._keys[key] = deque()
                    return delivery
                remaining = deadline - now
                if remaining <= 0:
                    return None
                if self._delayed:
                    remaining = min(remaining, self._delayed[0][0] - now)
                self._cond.wait(remaining)

    def ack(self, delivery: KDelivery) -> None:
        self._done.append(delivery.handle)
        if self.key_ordering and delivery.message.key is not None:
            self._release_key(delivery.message.key)

    def retry(self, delivery: KDelivery, delay: float, error: str) -> None:
        again = Delivery(delivery.message.next_attempt(), delivery.handle)
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), again))
            self._cond.notify()

    def dead(self, delivery: KDelivery, error: str) -> None:
        handle = delivery.handle
        try:
            self._dlq.write(delivery.message, error, handle.tracker, handle.offset)
        except DeliveryError:
            # Not finished: hand it out again later rather than losing or committing it.
            self.retry(Delivery(delivery.message, handle), 5.0, error)
            raise
        self.ack(delivery)

    def release(self, delivery: KDelivery) -> None:
        with self._cond:
            self._ready.appendleft(delivery)
            self._cond.notify()

    def close(self) -> None:
        """Stop polling, commit what is finished, leave the group; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._room.notify_all()
        self._closing.set()
        thread = self._thread
        if thread is not None:
            thread.join(60)
        else:
            with self._start_lock:
                self._consumer.close()
        self._dlq.close()

    # -- introspection -------------------------------------------------------------------------
    def lag(self) -> dict[TP, int]:
        """Per assigned partition: messages between the commit point and the end of the log."""
        return dict(self._lag)

    def assignment(self) -> list[TP]:
        return sorted(self._trackers)

    # -- settling helpers (any thread) ---------------------------------------------------------
    def _release_key(self, key: Hashable) -> None:
        with self._cond:
            waiting = self._keys.get(key)
            if waiting is None:
                return
            if waiting:
                self._ready.append(waiting.popleft())
                self._cond.notify()
            else:
                del self._keys[key]

    # -- poll thread ---------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"brokerq-kafka-poll-{self.topic}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        try:
            consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            next_commit = time.monotonic() + self.commit_interval
            while not self._closing.is_set():
                self._flow_control()
                records = consumer.consume(self.batch_size, 0.1)
                if records:
                    self._accept(records)
                self._dlq.poll()
                if time.monotonic() >= next_commit:
                    self._commit(asynchronous=True)
                    self._update_lag()
                    next_commit = time.monotonic() + self.commit_interval
        except BaseException as e:
            logger.exception("kafka poll thread for %s failed", self.topic)
            with self._cond:
                self._failure = e
                self._cond.notify_all()
        finally:
            try:
                self._commit(asynchronous=False)
            except Exception:
                logger.exception("final commit for %s failed", self.topic)
            try:
                consumer.close()
            except Exception:
                logger.exception("closing the kafka consumer for %s failed", self.topic)

    def _accept(self, records: list[Any]) -> None:
        """Track a consume() batch, then buffer it under one lock acquisition.

        This runs for every record on the one poll thread, so it does the least it can: the
        tracker is looked up once per run of records from the same partition, and decoding
        is left to ``receive``.
        """
        batch: list[tuple[Any, PartitionTracker]] = []
        append = batch.append
        trackers = self._trackers
        tracker: PartitionTracker | None = None
        for record in records:
            err = record.error()
            if err is not None:
                self._on_record_error(err)
                continue
            topic = record.topic()
            partition = record.partition()
            if tracker is None or partition != tracker.partition or topic != tracker.topic:
                tracker = trackers.get((topic, partition))
                if tracker is None:  # from outside the assignment we know: track it anyway
                    tracker = trackers[(topic, partition)] = PartitionTracker(topic, partition)
            tracker.add(record.offset())
            append((record, tracker))
        if batch:
            with self._cond:
                self._buffer.extend(batch)
                self._cond.notify(len(batch))

    def _decode(self, record: Any, tracker: PartitionTracker) -> KDelivery | None:
        """The delivery for a buffered record (``_wire.decode`` inlined: it runs per message).

        None for a record that cannot be decoded: it goes to the dead letters at once.
        """
        offset = record.offset()
        user: dict[str, str] = {}
        msg_id = ""
        attempt = 1
        raw = record.headers()
        if raw:
            try:
                for name, data in raw:
                    text = data.decode() if data is not None else ""
                    if name in _TRANSPORT:
                        if name == _ID:
                            msg_id = text
                        elif name == _ATTEMPT:
                            attempt = int(text)
                    else:
                        user[name] = text
            except (ValueError, UnicodeDecodeError) as e:
                self._poison(record, tracker, offset, e)
                return None
        value = record.value()
        ts = record.timestamp()[1]
        message = _make_message(
            value if value is not None else b"",
            record.key(),
            user,
            msg_id or f"{tracker.id_prefix}{offset}",
            attempt,
            ts / 1000.0 if ts and ts > 0 else 0.0,
        )
        return Delivery(message, Handle(tracker, offset))

    def _poison(self, record: Any, tracker: PartitionTracker, offset: int, e: Exception) -> None:
        """A record we cannot decode goes to the dead letters at once."""
        error = f"DecodeError: undecodable kafka record: {e}"
        logger.warning("%s/%d/%d: %s", tracker.topic, tracker.partition, offset, error)
        message = _wire.raw_message(record)
        done = self._done
        handle = Handle(tracker, offset)
        self._dlq.write_async(
            message,
            error,
            tracker,
            offset,
            lambda: done.append(handle),
            record.headers(),
        )

    def _flow_control(self) -> None:
        """Apply finished offsets; when the buffer is full, wait briefly for room, then pause.

        Pausing makes librdkafka drop what it prefetched, so it is kept for handlers that are
        really slow; a full buffer that drains within ``room_wait`` costs nothing.
        """
        self._apply_done()
        if self._unpaused:
            if self._paused:
                self._consumer.pause(self._unpaused)
            else:  # librdkafka keeps a partition's pause across lost + reassigned: clear it
                self._consumer.resume(self._unpaused)
            self._unpaused = []
        if len(self._buffer) >= self.buffer_size:
            with self._room:
                if len(self._buffer) > self._low_water and not self._closed:
                    self._want_room = True
                    self._room.wait(self.room_wait)
                    self._want_room = False
            self._apply_done()
        size = len(self._buffer)
        if not self._paused and size >= self.buffer_size:
            parts = [TopicPartition(t, p) for t, p in self._trackers]
            if parts:
                self._consumer.pause(parts)
                self._paused = True
        elif self._paused and size <= self._low_water:
            self._consumer.resume([TopicPartition(t, p) for t, p in self._trackers])
            self._paused = False

    def _apply_done(self) -> None:
        done = self._done
        popleft = done.popleft
        while done:
            handle = popleft()
            handle.tracker.outstanding.discard(handle.offset)

    def _commit(self, asynchronous: bool, only: set[TP] | None = None) -> None:
        """Commit each partition's safe position; sync commits resend even unchanged ones."""
        self._apply_done()
        offsets: list[TopicPartition] = []
        moved: list[tuple[PartitionTracker, int]] = []
        for tp, tracker in self._trackers.items():
            if only is not None and tp not in only:
                continue
            pos = tracker.pending_commit() if asynchronous else tracker.position()
            if pos is not None:
                offsets.append(TopicPartition(tp[0], tp[1], pos))
                moved.append((tracker, pos))
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                return
            logger.warning("kafka commit for %s failed (will retry): %s", self.topic, e)
            return
        for tracker, pos in moved:
            tracker.committed = pos

    def _update_lag(self) -> None:
        lag: dict[TP, int] = {}
        for tp, tracker in self._trackers.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                continue
            pos = tracker.position()
            if high is not None and high >= 0 and pos is not None:
                lag[tp] = max(0, high - pos)
        self._lag = lag

    # -- rebalance callbacks (run inside consume(), on the poll thread) ------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._trackers[(p.topic, p.partition)] = PartitionTracker(p.topic, p.partition)
        self._unpaused.extend(partitions)  # flow control pauses them too if we are paused
        logger.info("kafka %s assigned %s", self.topic, sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._drop(gone)
        try:
            self._commit(asynchronous=False, only=gone)
        except Exception:
            logger.exception("commit on revoke for %s failed", self.topic)
        for tp in gone:
            self._trackers.pop(tp, None)
        logger.info("kafka %s revoked %s", self.topic, sorted(p for _, p in gone))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._drop(gone)
        for tp in gone:
            self._trackers.pop(tp, None)
        logger.warning("kafka %s lost %s", self.topic, sorted(p for _, p in gone))

    def _drop(self, gone: set[TP]) -> None:
        """Forget buffered, waiting and delayed messages of partitions we no longer own."""
        revoked = {id(self._trackers[tp]) for tp in gone if tp in self._trackers}

        def keep(d: KDelivery) -> bool:
            return id(d.handle.tracker) not in revoked

        def keep_record(entry: tuple[Any, PartitionTracker]) -> bool:
            return id(entry[1]) not in revoked

        with self._cond:
            # Receivers pop the buffer without the lock: take every item out atomically
            # (each goes either to a receiver or to us, never both), put back what we keep.
            buffer, taken = self._buffer, []
            while True:
                try:
                    taken.append(buffer.popleft())
                except IndexError:
                    break
            buffer.extendleft(reversed([e for e in taken if keep_record(e)]))
            if buffer:
                self._cond.notify_all()
            held = [d for d in self._ready if not keep(d)]
            held += [d for _, _, d in self._delayed if not keep(d)]
            self._ready = deque(d for d in self._ready if keep(d))
            self._delayed = [e for e in self._delayed if keep(e[2])]
            heapq.heapify(self._delayed)
            for key in list(self._keys):
                self._keys[key] = deque(d for d in self._keys[key] if keep(d))
            for d in held:  # these held their key: pass it on
                if self.key_ordering and d.message.key is not None:
                    waiting = self._keys.get(d.message.key)
                    if waiting:
                        self._ready.append(waiting.popleft())
                    elif waiting is not None:
                        del self._keys[d.message.key]

    # -- driver callbacks ----------------------------------------------------------------------
    def _on_record_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        logger.warning("kafka consumer %s: %s", self.topic, err.str())

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            logger.warning("kafka commit for %s failed: %s", self.topic, err.str())

    def _on_client_error(self, err: KafkaError) -> None:
        logger.warning("kafka consumer %s: %s", self.topic, err.str())
