"""Retry topics: a failed message's next attempt is a record, not a timer in memory.

Spring Kafka's non-blocking retries and Uber's retry queues: the Worker's RETRY outcome
re-publishes the message to ``<topic>.retry.<tier>`` (``<tier>``: the largest backoff tier
in seconds not above the delay, e.g. ``orders.retry.10``) with its next attempt number and
its exact due time in headers, and the original offset is done, so a failing message never
holds its partition's commit point and survives a crash with its attempt count.

A source reads its retry topics in the same consumer group as the main topic. A record that
is not yet due pauses its partition until it is (records of one tier come due roughly in the
order they were written); it is never handed out early. A retry can run late by at most its
tier's width (the next tier minus its own) when an earlier record of the same partition
is due later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf

logger = logging.getLogger(__name__)

RETRY_INFIX = ".retry."


def tier_name(seconds: float) -> str:
    return f"{seconds:g}"


def retry_topics(conf: KqConf) -> list[str]:
    """The retry topic of every tier, shortest backoff first."""
    return [f"{conf.topic}{RETRY_INFIX}{tier_name(t)}" for t in conf.retry_tiers]


def topic_for(conf: KqConf, delay: float) -> str:
    """The retry topic for a backoff of ``delay`` seconds."""
    tiers: Sequence[float] = conf.retry_tiers
    chosen = tiers[0]
    for t in tiers:
        if t <= delay:
            chosen = t
    return f"{conf.topic}{RETRY_INFIX}{tier_name(chosen)}"


def is_retry_topic(conf: KqConf, topic: str) -> bool:
    return topic.startswith(conf.topic + RETRY_INFIX)


def ensure(conf: KqConf, admin: AdminClient, partitions: int, timeout: float = 30.0) -> None:
    """Create the retry topics that do not exist yet, with ``partitions`` partitions each
    (the main topic's count, so a key keeps the same partition number) and the broker's
    default replication. ConnectionFailed / BrokerError when the broker refuses."""
    topics = retry_topics(conf)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(t, num_partitions=max(1, partitions)) for t in topics if t not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
            logger.info("created retry topic %s", name)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise translate(e, f"kafka retry topic {name!r}") from e


def prepare(conf: KqConf) -> bool:
    """Create the retry topics; True when the main topic does not exist yet (a source then
    reads it from its beginning once it appears, so nothing pushed after start is missed)."""
    admin = AdminClient(conf.reader_config(f"{conf.group}.admin"))
    md = admin.list_topics(timeout=10).topics.get(conf.topic)
    partitions = len(md.partitions) if md is not None and md.error is None else -1
    if partitions < 0:
        logger.warning(
            "kafka topic %r does not exist yet: reading it from its beginning once it appears",
            conf.topic,
        )
    ensure(conf, admin, partitions)
    return partitions < 0
