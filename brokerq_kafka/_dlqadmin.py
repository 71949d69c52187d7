"""Managing the dead-letter topic, where records cannot be deleted: an admin consumer group.

The group ``<group>.dlq-admin`` never subscribes; it only commits. A dead letter is *open*
while it sits at or after that group's committed offset in its partition and its offset is
not in the commit's metadata (``brokerq-done:3-5,9``: records after the committed offset that
were already retried, so retrying a later ref does not have to wait for the earlier ones).

* list: the open records, from the committed offsets (from the start when none).
* retry: republish open records to the main topic (original key, value and user headers,
  ``brokerq-id`` kept, attempt back to 1), wait for the acks, then commit up to the first
  record still open in each partition, the handled ones after it going into the metadata.
* purge: commit every partition's high watermark.

A crash between the produce acks and the commit republishes those records again on the next
retry (at-least-once, like everything else in brokerq).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _KafkaProducer

from brokerq.errors import ConnectionFailed, DeliveryError
from brokerq_kafka import _wire
from brokerq_kafka._dlqrefs import (
    METADATA_LIMIT,
    admin_group,
    decode_done,
    encode_done,
    parse_ref,
)
from brokerq_kafka._errors import serving, translate
from brokerq_kafka._produce import produce_within
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)

STALL_TIMEOUT = 30.0  # no record and no end-of-partition for this long: give up
COMMIT_EVERY = 1000  # republished records between intermediate commits


@dataclass
class _Partition:
    """Where the admin group stands in one DLQ partition."""

    partition: int
    start: int  # first offset that may be open
    end: int  # high watermark when we looked
    done: set[int] = field(default_factory=set)  # handled offsets >= start


class DeadLetterAdmin:
    """List, retry and purge the dead letters of one ``KqConf`` (not thread-safe: lock outside)."""

    def __init__(self, conf: KqConf) -> None:
        self.conf = conf
        self.topic = conf.dead_letter_topic
        self._consumer: Any = None
        self._producer: Any = None

    # -- operations --------------------------------------------------------------------------
    def records(self, limit: int) -> list[Any]:
        """Up to ``limit`` open dead-letter records, in partition then offset order."""
        out: list[Any] = []
        if limit <= 0:
            return out
        try:
            positions = self._positions()
            for record in self._read(positions):
                if record.offset() in positions[record.partition()].done:
                    continue
                out.append(record)
                if len(out) >= limit:
                    break
        except KafkaException as e:
            raise translate(e, f"kafka dead letters in {self.topic!r}") from e
        return out

    def retry(self, refs: list[str] | None, republish: bool = True) -> int:
        """Republish open dead letters (all, or those refs) to the main topic; commit past them.

        With ``republish=False`` they are only marked handled (purging some refs)."""
        wanted: dict[int, set[int]] | None = None
        if refs is not None:
            wanted = {}
            for ref in refs:
                p, o = parse_ref(ref)
                wanted.setdefault(p, set()).add(o)
            if not wanted:
                return 0
        context = f"kafka retry of dead letters from {self.topic!r} to {self.conf.topic!r}"
        try:
            positions = self._positions()
            if wanted is not None:
                # Only the partitions asked for, and only up to the last offset asked for.
                positions = {p: pos for p, pos in positions.items() if wanted.get(p)}
                for p, pos in positions.items():
                    pos.end = min(pos.end, max(wanted[p]) + 1)
            producer = self._get_producer()
            first_open: dict[int, int] = {}  # first record offset left open, per partition
            read_to: dict[int, int] = {}  # last record offset read, per partition
            handled: dict[int, set[int]] = {p: set(pos.done) for p, pos in positions.items()}
            pending: list[Any] = []  # delivery errors
            requeued = 0
            unflushed = 0
            for record in self._read(positions):
                p, o = record.partition(), record.offset()
                read_to[p] = o
                if o in handled[p]:
                    continue
                if wanted is not None and o not in wanted.get(p, ()):
                    first_open.setdefault(p, o)
                    continue
                if republish:
                    self._republish(producer, record, pending)
                handled[p].add(o)
                requeued += 1
                unflushed += 1
                if unflushed >= COMMIT_EVERY:
                    self._flush(producer, pending)
                    self._commit(self._progress(positions, first_open, handled, read_to))
                    unflushed = 0
            self._flush(producer, pending)
            self._commit(self._progress(positions, first_open, handled, None))
        except KafkaException as e:
            raise translate(e, context, DeliveryError) from e
        return requeued

    def purge(self) -> int:
        """Commit every partition's high watermark; how many open records that skipped."""
        try:
            positions = self._positions()
            skipped = 0
            commits = []
            for pos in positions.values():
                if pos.end <= pos.start and not pos.done:
                    continue
                skipped += max(0, pos.end - pos.start) - len(
                    [o for o in pos.done if pos.start <= o < pos.end]
                )
                commits.append(TopicPartition(self.topic, pos.partition, pos.end))
            self._commit(commits)
        except KafkaException as e:
            raise translate(
                e, f"kafka purge of dead letters in {self.topic!r}", DeliveryError
            ) from e
        return skipped

    def open_count(self) -> int:
        """How many dead letters are open (from offsets only, no reading)."""
        try:
            return sum(
                max(0, pos.end - pos.start) - len([o for o in pos.done if pos.start <= o < pos.end])
                for pos in self._positions().values()
            )
        except KafkaException as e:
            raise translate(e, f"kafka dead letters in {self.topic!r}") from e

    def close(self) -> None:
        if self._producer is not None:
            left = serving(self._producer.flush, self.conf.push_timeout)
            if left:
                logger.error("%d requeued dead letter(s) not acknowledged at close", left)
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- internals ---------------------------------------------------------------------------
    def _get_consumer(self) -> Any:
        if self._consumer is None:
            config = self.conf.reader_config(
                admin_group(self.conf),
                **{
                    "client.id": f"brokerq-dlq-admin-{uuid.uuid4().hex[:8]}",
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                },
            )
            try:
                self._consumer = Consumer(config)
            except (KafkaException, ValueError, TypeError) as e:
                raise translate(e, f"kafka dead-letter admin for {self.topic!r}") from e
        return self._consumer

    def _get_producer(self) -> Any:
        if self._producer is None:
            try:
                self._producer = _KafkaProducer(self.conf.writer_config())
            except (KafkaException, ValueError, TypeError) as e:
                raise translate(e, f"kafka producer for {self.conf.topic!r}") from e
        return self._producer

    def _positions(self) -> dict[int, _Partition]:
        """Per DLQ partition: the admin group's start, the high watermark, the done offsets."""
        consumer = self._get_consumer()
        md = consumer.list_topics(topic=self.topic, timeout=10).topics.get(self.topic)
        if md is None or md.error is not None:
            if md is not None and md.error is not None:
                code = md.error.code()
                if code != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(md.error)
            return {}
        parts = sorted(md.partitions)
        if not parts:
            return {}
        committed = consumer.committed([TopicPartition(self.topic, p) for p in parts], timeout=10)
        out: dict[int, _Partition] = {}
        for tp in committed:
            if tp.error is not None:
                raise KafkaException(tp.error)
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=10
            )
            done: set[int] = set()
            if tp.offset >= 0:
                start = max(tp.offset, low)
                done = {o for o in decode_done(tp.metadata) if o >= start}
            else:
                start = low
            out[tp.partition] = _Partition(tp.partition, start, max(high, start), done)
        return out

    def _read(self, positions: dict[int, _Partition]) -> Iterator[Any]:
        """The records in ``[start, end)`` of every partition, each partition in offset order."""
        todo = {p: pos.end for p, pos in positions.items() if pos.end > pos.start}
        if not todo:
            return
        consumer = self._get_consumer()
        consumer.assign([TopicPartition(self.topic, p, positions[p].start) for p in todo])
        try:
            last_progress = time.monotonic()
            last_error = ""
            while todo:
                records = consumer.consume(500, 0.5)
                if not records and time.monotonic() - last_progress > STALL_TIMEOUT:
                    raise ConnectionFailed(
                        f"kafka dead letters in {self.topic!r}: nothing read for "
                        f"{STALL_TIMEOUT:.0f}s{': ' + last_error if last_error else ''}"
                    )
                for record in records:
                    p = record.partition()
                    err = record.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.pop(p, None)
                            last_progress = time.monotonic()
                        elif err.fatal():
                            raise KafkaException(err)
                        else:
                            last_error = err.str()
                        continue
                    if p not in todo:
                        continue
                    last_progress = time.monotonic()
                    o = record.offset()
                    if o >= todo[p]:
                        todo.pop(p, None)
                        continue
                    if o + 1 >= todo[p]:
                        todo.pop(p, None)
                    yield record
        finally:
            consumer.unassign()

    def _republish(self, producer: Any, record: Any, errors: list[Any]) -> None:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)

        produce_within(
            producer,
            time.monotonic() + self.conf.push_timeout,
            self.conf.topic,
            record.value(),
            record.key(),
            _wire.republish_headers(record),
            on_delivery=report,
            what="kafka retry of dead letters",
        )

    def _flush(self, producer: Any, errors: list[Any]) -> None:
        left = serving(producer.flush, self.conf.push_timeout)
        if left:
            raise DeliveryError(
                f"kafka retry of dead letters to {self.conf.topic!r}: {left} record(s) not "
                f"acknowledged within {self.conf.push_timeout}s"
            )
        if errors:
            raise DeliveryError(
                f"kafka retry of dead letters to {self.conf.topic!r} failed: {errors[0].str()}"
            )

    def _progress(
        self,
        positions: dict[int, _Partition],
        first_open: dict[int, int],
        handled: dict[int, set[int]],
        read_to: dict[int, int] | None,
    ) -> list[TopicPartition]:
        """The commits for what is handled so far: up to the first open record, rest as metadata.

        ``read_to`` (mid-way) is the last offset read per partition; None once every partition
        was read to its end.
        """
        out = []
        for p, pos in positions.items():
            done = handled[p]
            if p in first_open:
                offset = first_open[p]
            elif read_to is None:
                offset = pos.end
            else:
                offset = read_to.get(p, pos.start - 1) + 1
            offset = max(offset, pos.start)
            rest = {o for o in done if o >= offset}
            while offset in rest:  # contiguous handled records right at the commit point
                rest.discard(offset)
                offset += 1
            metadata = encode_done(rest)
            if len(metadata) > METADATA_LIMIT:
                logger.warning(
                    "%s[%d]: %d retried dead letters after offset %d do not fit in the commit "
                    "metadata; they will be listed again",
                    self.topic,
                    p,
                    len(rest),
                    offset,
                )
                metadata = ""
            if offset == pos.start and rest == pos.done:
                continue  # nothing changed
            out.append(TopicPartition(self.topic, p, offset, metadata))
        return out

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        result = self._get_consumer().commit(offsets=offsets, asynchronous=False)
        for tp in result or []:
            if tp.error is not None:
                raise DeliveryError(
                    f"kafka commit of {admin_group(self.conf)!r} on {self.topic!r}"
                    f"[{tp.partition}]: {tp.error.str()}"
                )
