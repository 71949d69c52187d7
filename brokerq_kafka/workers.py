"""kq live workers: the consumer group's own description (members, hosts, partitions).

A Kafka consumer heartbeats to its group coordinator by itself, so ``heartbeat`` writes
nothing: a member listed by ``describe_consumer_groups`` is alive (it leaves the group after
``session.timeout.ms`` without heartbeats). The description has no pid, concurrency or start
time; the page shows them as unknown.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from brokerq.broker import WorkerInfo
from brokerq_kafka._errors import translate


def members(
    config: dict[str, Any], group: str, topic: str, timeout: float = 10.0
) -> list[WorkerInfo]:
    """The group's members as WorkerInfo: name = client id, queue = ``topic[partitions]``."""
    admin = AdminClient(config)
    try:
        futures = admin.describe_consumer_groups([group], request_timeout=timeout)
        description = futures[group].result(timeout=timeout)
    except KafkaException as e:
        raise translate(e, f"kafka describe group {group!r}") from e
    now = time.time()
    out = []
    for m in description.members:
        assigned = sorted(
            tp.partition
            for tp in (m.assignment.topic_partitions if m.assignment else [])
            if tp.topic == topic
        )
        out.append(
            WorkerInfo(
                name=str(m.client_id),
                host=str(m.host).lstrip("/"),
                pid=0,
                concurrency=0,
                started=0.0,
                last_beat=now,
                in_flight=0,
                queue=f"{topic}{assigned}",
            )
        )
    return sorted(out, key=lambda w: (w.name, w.host))
