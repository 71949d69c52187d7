"""Schedule fire records of the kq backend (brokerq.schedule.FireStore): one fenced writer.

Kafka cannot refuse a record whose id exists, so exactly once comes from a single writer that
knows the last fire of every schedule, enforced by the broker:

- **Leader (an optimisation):** every scheduler of a namespace joins the consumer group
  ``<group>.schedules.<namespace>`` on the one-partition control topic ``<topic>.schedules-leader``;
  the member that owns its partition fires, the others stand by (``active()`` is False). When
  the leader dies, its partition moves after ``session.timeout.ms`` (6 s here).
- **Fencing (the correctness):** the leader writes with a transactional producer whose
  ``transactional.id`` is the same for the whole namespace. ``init_transactions`` aborts
  whatever an earlier writer left open and fences it: a zombie leader's next commit fails.
- **State:** each fire is one transaction: the message (id = fire id) to ``<topic>`` and the
  schedule's last fire to the compacted ``<topic>.schedules`` topic, keyed by namespace and
  name. A new writer reads that topic to its end (read_committed) after ``init_transactions``,
  so it sees every fire a fenced writer committed, and fires only ticks after them.

Two schedulers that both believe they lead only fence each other in turn: a fire is committed
by the holder of the newest epoch, after it has read every earlier commit.
Consumers of ``<topic>`` must read committed records (librdkafka's default isolation level).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from brokerq.errors import BrokerError, DeliveryError
from brokerq.message import Message
from brokerq.schedule.spec import EPOCH
from brokerq.schedule.store import FireStore
from brokerq_kafka import _wire
from brokerq_kafka._errors import kafka_error, serving, translate
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)

TIMEOUT = 30.0
"""Seconds any single Kafka call here may take (topic creation, init, commit, state read)."""
SESSION_TIMEOUT_MS = 6000
_ONE_US = timedelta(microseconds=1)


class KafkaFireStore(FireStore):
    """The leader's transactional writer and the followers' standby, for one namespace."""

    max_wait = 0.5  # the control group's rebalances are served by polling it

    def __init__(self, conf: KqConf, namespace: str) -> None:
        super().__init__(namespace)
        self._conf = conf
        self.state_topic = f"{conf.topic}.schedules"
        self.control_topic = f"{conf.topic}.schedules-leader"
        self._group = f"{conf.group}.schedules.{namespace}"
        self._txn_id = f"brokerq-schedules-{conf.topic}-{namespace}"
        self._member: Any = None  # the control-topic consumer (leadership)
        self._leader = False
        self._producer: Any = None  # set while we hold the newest epoch
        self._last: dict[str, datetime] = {}
        self._topics_ready = False

    # -- leadership ----------------------------------------------------------------------------
    def active(self) -> bool:
        """Poll the control group; on becoming leader, fence earlier writers and read state."""
        member = self._join()
        try:
            member.poll(0)  # runs assignment callbacks; the control topic carries no records
        except KafkaException as e:
            raise translate(e, f"kafka schedule leadership {self._group}") from e
        if not self._leader:
            self._drop_producer()
            return False
        if self._producer is None:
            self._take_over()
        return True

    def _join(self) -> Any:
        if self._member is None:
            self._ensure_topics()
            config = self._conf.client(
                "reader",
                {
                    "session.timeout.ms": SESSION_TIMEOUT_MS,
                    "heartbeat.interval.ms": 1000,
                    "partition.assignment.strategy": "range",
                },
                {
                    "group.id": self._group,
                    "client.id": f"brokerq-scheduler-{uuid.uuid4().hex[:8]}",
                },
            )
            member = Consumer(config)
            member.subscribe(
                [self.control_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            self._member = member
        return self._member

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._leader = bool(partitions)
        if self._leader:
            logger.info("schedules %s: this scheduler leads", self.namespace)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if self._leader:
            logger.info("schedules %s: leadership moved away", self.namespace)
        self._leader = False

    def _ensure_topics(self) -> None:
        """Create the state and control topics (1 partition each) unless they exist, and wait
        until both have a partition leader."""
        if self._topics_ready:
            return
        admin = AdminClient(self._conf.client("admin"))
        wanted = [
            NewTopic(self.state_topic, 1, -1, config={"cleanup.policy": "compact"}),
            NewTopic(self.control_topic, 1, -1),
        ]
        for topic, future in admin.create_topics(wanted, request_timeout=TIMEOUT).items():
            try:
                future.result(timeout=TIMEOUT)
            except KafkaException as e:
                err = kafka_error(e)
                if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise translate(e, f"kafka: creating {topic}") from e
        deadline = time.monotonic() + TIMEOUT
        for topic in (self.state_topic, self.control_topic):
            while True:
                try:
                    md = admin.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
                except KafkaException as e:
                    raise translate(e, f"kafka: metadata of {topic}") from e
                parts = md.partitions if md is not None and md.error is None else {}
                if parts and all(p.leader >= 0 for p in parts.values()):
                    break
                if time.monotonic() > deadline:
                    raise BrokerError(f"kafka: topic {topic} has no partition leader")
                time.sleep(0.1)
        self._topics_ready = True

    # -- the fenced writer ---------------------------------------------------------------------
    def _take_over(self) -> None:
        self._ensure_topics()
        config = self._conf.client(
            "durable",
            internal={
                "transactional.id": self._txn_id,
                "transaction.timeout.ms": int(TIMEOUT * 1000),
            },
        )
        producer = Producer(config)
        try:
            producer.init_transactions(TIMEOUT)  # fences every earlier writer of this id
        except KafkaException as e:
            raise translate(e, f"kafka schedules {self.namespace}: init_transactions") from e
        self._last = self._read_state()
        self._producer = producer
        logger.info(
            "schedules %s: writer ready, %d last fire(s) read", self.namespace, len(self._last)
        )

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            serving(producer.flush, 1)

    def _read_state(self) -> dict[str, datetime]:
        """Every committed last fire of this namespace (the compacted topic, to its end)."""
        self._ensure_topics()
        config = self._conf.client(
            "reader",
            internal={
                "group.id": f"brokerq-schedules-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
        reader = Consumer(config)
        out: dict[str, datetime] = {}
        try:
            tp = TopicPartition(self.state_topic, 0)
            _, high = reader.get_watermark_offsets(tp, timeout=TIMEOUT)
            reader.assign([TopicPartition(self.state_topic, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + TIMEOUT
            while high > 0:
                record = reader.poll(0.2)
                if record is not None:
                    error = record.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        break
                    key, value = record.key(), record.value()
                    if error is None and key is not None and value is not None:
                        ns, name = json.loads(key)
                        if ns == self.namespace:
                            t = EPOCH + int(value) * _ONE_US
                            out[name] = max(t, out.get(name, t))
                if reader.position([tp])[0].offset >= high:
                    break
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"kafka: reading {self.state_topic} to offset {high} took over {TIMEOUT}s"
                    )
        except KafkaException as e:
            raise translate(e, f"kafka: reading {self.state_topic}") from e
        finally:
            reader.close()
        return out

    # -- FireStore -----------------------------------------------------------------------------
    def last_fire(self, name: str) -> datetime | None:
        if self._producer is None and not self._leader:
            return self._read_state().get(name)  # a standby (or ``schedule list``) reads it
        return self._last.get(name)

    def fire(
        self,
        name: str,
        fire_time: datetime,
        message: Message,
        *,
        priority: int | None = None,
        record: bool = True,
    ) -> bool:
        if not record:
            return self._fire_once(message)
        if self._producer is None:
            if self._member is not None and not self._leader:
                raise BrokerError(f"schedules {self.namespace}: no longer the leader")
            self._take_over()  # a leader whose writer was fenced
        producer = self._producer
        last = self._last.get(name)
        if record and last is not None and fire_time <= last:
            return False  # committed before (by us or by a writer we fenced)
        headers = _wire.record_headers(message.id, message.headers)
        try:
            producer.begin_transaction()
            producer.produce(self._conf.topic, message.value, message.key, headers=headers)
            if record:
                producer.produce(
                    self.state_topic,
                    str((fire_time - EPOCH) // _ONE_US).encode(),
                    json.dumps([self.namespace, name]).encode(),
                )
            producer.commit_transaction(TIMEOUT)
        except KafkaException as e:
            self._abort(producer, e)
            raise translate(e, f"kafka: fire {message.id}", DeliveryError) from e
        if record:
            self._last[name] = fire_time
        return True

    def _fire_once(self, message: Message) -> bool:
        """A manual run: a plain idempotent write, so the leader's writer is not fenced."""
        config = self._conf.client("durable")
        errors: list[Any] = []
        try:
            producer = Producer(config)
            producer.produce(
                self._conf.topic,
                message.value,
                message.key,
                headers=_wire.record_headers(message.id, message.headers),
                on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
            )
            left = producer.flush(TIMEOUT)
        except KafkaException as e:
            raise translate(e, f"kafka: fire {message.id}", DeliveryError) from e
        if left or errors:
            raise DeliveryError(f"kafka: fire {message.id}: {errors[0] if errors else 'timed out'}")
        return True

    def _abort(self, producer: Any, e: KafkaException) -> None:
        err = kafka_error(e)
        if err is not None and err.txn_requires_abort():
            try:
                producer.abort_transaction(TIMEOUT)
                return
            except KafkaException as abort_error:
                logger.warning("schedules %s: abort failed: %s", self.namespace, abort_error)
        # fenced or fatal: this writer is done; the next fire takes over again (re-reading state)
        logger.warning("schedules %s: writer lost: %s", self.namespace, e)
        self._producer = None

    def close(self) -> None:
        self._drop_producer()
        member, self._member = self._member, None
        if member is not None:
            member.close()  # leaves the group at once: a standby takes over without waiting
        self._leader = False
