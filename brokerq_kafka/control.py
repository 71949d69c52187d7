"""Pause flags of kq consumer groups, kept in Kafka so they reach every process and survive
restarts (issue 15: pause / resume).

The flag of group ``G`` on topic ``T`` is the newest record with key ``G`` in the compacted,
one-partition topic ``T.brokerq-control`` (value: JSON ``{"paused": bool, "at": unix seconds,
"by": "host:pid"}``). Compaction keeps the newest record of each group, so the topic stays a
few records long whatever the history.

- ``write_flag`` (``brokerq pause`` / ``resume``) writes with a durable producer (acks=all,
  idempotent) and returns once the broker acknowledged it: DeliveryError otherwise.
- ``PauseWatch`` (one per broker in a worker process) is a thread with a consumer assigned to
  the control partition (no group, no commits) that reads it from its start and keeps the
  group's newest flag in memory: ``paused()`` is an attribute read. A new record reaches a
  watch within one fetch round trip (the fetch long-polls with ``fetch.min.bytes`` 1). Only
  changes read after the topic's end was first reached are logged (INFO), not its history.
- ``read_flag`` reads the flag once (``stats``), without creating the topic.

Only the watch's thread touches its consumer (one owner per thread-bound object).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
import uuid
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

from brokerq.errors import BrokerError, BrokerqError, DeliveryError
from brokerq_kafka._errors import kafka_error, serving, translate
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)

SUFFIX = ".brokerq-control"
TIMEOUT = 10.0
"""Seconds a single Kafka call here may take (topic creation, the flag's write, first read)."""
_FAST_FETCH = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 100, "enable.partition.eof": True}


def control_topic(conf: KqConf) -> str:
    """``<topic>.brokerq-control``: the compacted topic holding the pause flag of every group."""
    return conf.topic + SUFFIX


def ensure_topic(conf: KqConf) -> None:
    """Create the control topic (1 partition, ``cleanup.policy=compact``) unless it exists and
    wait until its partition has a leader; BrokerError when it cannot."""
    topic = control_topic(conf)
    admin = AdminClient(conf.client("admin"))
    new = NewTopic(topic, 1, -1, config={"cleanup.policy": "compact"})
    try:
        admin.create_topics([new], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    except KafkaException as e:
        err = kafka_error(e)
        if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise translate(e, f"kafka: creating {topic}") from e
    except concurrent.futures.TimeoutError as e:  # the admin future's own timeout
        raise BrokerError(f"kafka: creating {topic}: no answer within {TIMEOUT:g}s") from e
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            md = admin.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
        except KafkaException as e:
            raise translate(e, f"kafka: metadata of {topic}") from e
        parts = md.partitions if md is not None and md.error is None else {}
        if parts and all(p.leader >= 0 for p in parts.values()):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"kafka: topic {topic} has no partition leader")
        time.sleep(0.1)


def write_flag(conf: KqConf, paused: bool) -> int:
    """Record ``paused`` for ``conf.group``; return the record's offset once acknowledged.

    Raises DeliveryError when the broker does not acknowledge it within 10 s, BrokerError
    when the control topic cannot be created."""
    ensure_topic(conf)
    topic = control_topic(conf)
    value = {"paused": paused, "at": time.time(), "by": f"{socket.gethostname()}:{os.getpid()}"}
    got: list[Any] = []
    try:
        producer = Producer(conf.client("durable", internal={"linger.ms": 0}))
        producer.produce(
            topic,
            json.dumps(value).encode(),
            conf.group.encode(),
            on_delivery=lambda err, msg: got.append(err if err is not None else msg),
        )
        serving(producer.flush, TIMEOUT)
    except KafkaException as e:
        raise translate(e, f"kafka: writing the pause flag to {topic}", DeliveryError) from e
    if not got or isinstance(got[0], KafkaError):
        why = got[0].str() if got else f"no acknowledgement within {TIMEOUT:g}s"
        raise DeliveryError(f"kafka: writing the pause flag to {topic}: {why}")
    offset: int = got[0].offset()
    return offset


def _parse(value: bytes | None) -> bool:
    """The flag in a control record; a tombstone or unreadable value means not paused."""
    if not value:
        return False
    try:
        return bool(json.loads(value).get("paused", False))
    except (ValueError, AttributeError):
        logger.warning("unreadable pause flag %r: taken as not paused", value[:100])
        return False


def _reader(conf: KqConf) -> Consumer:
    config = conf.client(
        "reader",
        defaults={"enable.partition.eof": True},
        internal={"group.id": f"{conf.group}.control-{uuid.uuid4().hex[:8]}", **_FAST_FETCH},
    )
    try:
        return Consumer(config)
    except (KafkaException, ValueError, TypeError) as e:
        raise translate(e, f"kafka client config for {control_topic(conf)!r}") from e


def read_flag(conf: KqConf) -> bool:
    """The group's flag read once to the end of the control topic (False when the topic does
    not exist). ConnectionFailed / BrokerError when Kafka does not answer within 10 s."""
    topic = control_topic(conf)
    key = conf.group.encode()
    reader = _reader(conf)
    try:
        md = reader.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            return False
        _low, high = reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        paused = False
        if high <= 0:
            return paused
        reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            record = reader.poll(0.2)
            if record is None:
                continue
            err = record.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return paused
                continue
            if record.key() == key:
                paused = _parse(record.value())
            if (record.offset() or 0) + 1 >= high:
                return paused
        raise BrokerError(f"kafka: reading {topic} took longer than {TIMEOUT:g}s")
    except KafkaException as e:
        raise translate(e, f"kafka: reading the pause flag in {topic}") from e
    finally:
        reader.close()


class PauseWatch:
    """Keeps the newest pause flag of one group, read by a background thread.

    ``paused()`` starts the thread on its first call and waits (up to 10 s) until the control
    topic was read to its end, so a worker started while its queue is paused knows it before
    it takes a job; later calls only read memory. The thread creates the topic when it is
    missing, so the first ``pause`` reaches it like any other; when it cannot (no ACL, Kafka
    down) the flag reads False, a warning is logged, and it tries again every 5 s. When Kafka
    cannot be read later, the last known flag stays (a warning is logged once per outage).
    """

    def __init__(self, conf: KqConf) -> None:
        self.conf = conf
        self.topic = control_topic(conf)
        self._key = conf.group.encode()
        self._flag = False
        self._position = 0  # next offset to read
        self._ready = threading.Event()
        self._moved = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False
        self._caught_up = False  # read to the end once: later records are changes, not history

    def paused(self) -> bool:
        """The group's newest flag as this process has read it."""
        if self._thread is None:
            self._start()
            if not self._ready.wait(TIMEOUT):
                logger.warning("pause flag in %s not read within %gs", self.topic, TIMEOUT)
        return self._flag

    @property
    def current(self) -> bool:
        """The flag as last read, without starting the thread (False before it ran)."""
        return self._flag

    def wait_past(self, offset: int, timeout: float) -> bool:
        """Wait until the record at ``offset`` has been read (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._moved:
            while self._position <= offset:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._moved.wait(left)
        return True

    def close(self) -> None:
        """Stop the thread and close its consumer; idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(TIMEOUT)

    # -- the watch thread ----------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"brokerq-kafka-control-{self.conf.topic}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        reader: Consumer | None = None
        try:
            while reader is None and not self._stop.is_set():
                try:
                    ensure_topic(self.conf)
                    reader = _reader(self.conf)
                    reader.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
                except (BrokerqError, KafkaException, ValueError, TypeError) as e:
                    self._trouble(e)  # no ACL to create it, Kafka down: not paused until read
                    self._ready.set()
                    self._stop.wait(5.0)
            while reader is not None and not self._stop.is_set():
                self._step(reader)
        finally:
            self._ready.set()
            with self._moved:
                self._moved.notify_all()
            if reader is not None:
                reader.close()

    def _step(self, reader: Consumer) -> None:
        try:
            record = reader.poll(0.2)
        except KafkaException as e:
            self._trouble(e)
            return
        if record is None:
            return
        err = record.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if not self._caught_up:
                    self._caught_up = True
                    logger.debug("kafka group %s paused at start: %s", self.conf.group, self._flag)
                self._ready.set()
                self._recovered()
            else:
                self._trouble(KafkaException(err))
            return
        if record.key() == self._key:
            flag = _parse(record.value())
            if flag != self._flag and self._caught_up:  # the history read at start is no news
                logger.info("kafka group %s %s", self.conf.group, "paused" if flag else "resumed")
            self._flag = flag
        with self._moved:
            self._position = (record.offset() or 0) + 1
            self._moved.notify_all()

    def _trouble(self, e: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("reading the pause flag in %s: %s (keeping the last one)", self.topic, e)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("reading the pause flag in %s again", self.topic)
