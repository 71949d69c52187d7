"""Consumer-group lag per partition and the age of the first unconsumed record (kq ``stats``).

Why not simply ``high watermark - committed offset``: a transactional producer (schedule
fires, brokerq_kafka.fires) ends each transaction with a commit marker, a control record that
takes an offset but is never delivered to a consumer. A worker commits the offset after the
last record it handled, which is the marker's own offset, so ``high - committed`` stays 1 per
partition forever after a fire. The partition's last stable offset does not help either: the
marker lies below it. So where ``committed < high``, ``LagProbe`` reads from the committed
offset with a read_committed consumer that reports partition EOF:

- a record comes back: it is the first unconsumed one; the lag is ``high - its offset``
  (control records inside that range are counted, a few at most) and its timestamp gives the
  age of the oldest waiting message;
- EOF comes first: only control records (or aborted ones) remain; the lag is 0.

``lag_stats`` turns the measure into ``stats()`` keys; ``dead_listing`` is kq's
``Broker.jobs`` (dead letters only: pending records are counted, not listable).

The probe is time-bounded (``budget`` seconds for all partitions together); a partition that
has not answered by then keeps ``high - committed`` and no age. The probe never joins the
group nor commits (manual assignment; brokerq_kafka.clientconf's reader guarantees).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition

from brokerq.errors import NotSupported
from brokerq.listing import check_listing
from brokerq.records import JobInfo, dead_job
from brokerq_kafka.config import KqConf

if TYPE_CHECKING:
    from brokerq.broker import Broker

logger = logging.getLogger(__name__)

PROBE_BUDGET = 1.0
"""Seconds one ``measure`` may spend reading first records, all partitions together."""
TIMEOUT = 10.0
"""Seconds a committed-offset or watermark request may take."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition: ``lag`` (messages not yet committed by the group) and ``oldest`` (unix
    time of the first unconsumed record, None when none waits or it is unknown)."""

    partition: int
    lag: int
    oldest: float | None = None


class LagProbe:
    """Measures a group's lag on one topic; owns a probe consumer (one thread at a time)."""

    def __init__(self, conf: KqConf, group: str) -> None:
        self._conf = conf
        self._group = group
        self._consumer: Consumer | None = None

    def measure(
        self,
        client: Consumer,
        topic: str,
        partitions: list[int] | None = None,
        budget: float = PROBE_BUDGET,
    ) -> list[PartitionLag]:
        """Lag of ``partitions`` (None: all) of ``topic`` for the group of ``client`` (a
        consumer in that group, used for metadata, committed offsets and watermarks); [] for
        a topic that does not exist. Raises KafkaException."""
        if partitions is None:
            md = client.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
            partitions = [] if md is None or md.error is not None else sorted(md.partitions)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        spans: dict[int, tuple[int, int]] = {}
        for tp in client.committed(tps, timeout=TIMEOUT):
            low, high = client.get_watermark_offsets(tp, timeout=TIMEOUT)
            start = max(low, tp.offset) if tp.offset >= 0 else low
            spans[tp.partition] = (start, high)
        gaps = {p: span for p, span in spans.items() if span[1] > span[0]}
        found = self._first_records(topic, gaps, budget) if gaps else {}
        out = []
        for p, (start, high) in sorted(spans.items()):
            if p in found:
                offset, oldest = found[p]
                out.append(PartitionLag(p, max(0, high - offset) if offset >= 0 else 0, oldest))
            else:
                out.append(PartitionLag(p, max(0, high - start)))
        return out

    def pending(self, client: Consumer, topic: str) -> int:
        """Messages of ``topic`` the group has not committed (the sum of ``measure``)."""
        return sum(p.lag for p in self.measure(client, topic))

    def _first_records(
        self, topic: str, gaps: dict[int, tuple[int, int]], budget: float
    ) -> dict[int, tuple[int, float | None]]:
        """Per partition: (offset of the first record at or after its start, its time), or
        (-1, None) when EOF came first; partitions that did not answer in time are absent."""
        consumer = self._probe()
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in gaps.items()])
        found: dict[int, tuple[int, float | None]] = {}
        deadline = time.monotonic() + budget
        try:
            while len(found) < len(gaps):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                msg = consumer.poll(min(0.2, remaining))
                if msg is None:
                    continue
                partition, offset = msg.partition(), msg.offset()
                if partition is None or partition in found or partition not in gaps:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        found[partition] = (-1, None)
                    continue
                kind, ms = msg.timestamp()
                at = None if kind == TIMESTAMP_NOT_AVAILABLE else ms / 1000.0
                found[partition] = (-1 if offset is None else offset, at)
        finally:
            consumer.unassign()
        if len(found) < len(gaps):
            logger.debug(
                "lag probe of %s: %d partition(s) unanswered", topic, len(gaps) - len(found)
            )
        return found

    def _probe(self) -> Consumer:
        if self._consumer is None:
            config = self._conf.reader_config(
                self._group,
                **{
                    "client.id": f"brokerq-lag-{uuid.uuid4().hex[:8]}",
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    # answer at once at the end of a partition (EOF), fetch little per
                    # partition: only the first record matters (a larger one still comes)
                    "fetch.wait.max.ms": 10,
                    "fetch.message.max.bytes": 65536,
                },
            )
            self._consumer = Consumer(config)
        return self._consumer

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()


def lag_stats(lags: list[PartitionLag], now: float | None = None) -> dict[str, int]:
    """``pending`` (the sum), ``lag:<partition>`` each, and ``oldest_age_seconds`` (whole
    seconds since the oldest first-unconsumed record; 0 when nothing waits; absent when
    records wait but none was read in time)."""
    now = time.time() if now is None else now
    out = {"pending": sum(p.lag for p in lags)}
    out.update({f"lag:{p.partition}": p.lag for p in lags})
    oldest = [p.oldest for p in lags if p.oldest is not None]
    if oldest:
        out["oldest_age_seconds"] = int(max(0.0, now - min(oldest)))
    elif not out["pending"]:
        out["oldest_age_seconds"] = 0
    return out


def dead_listing(broker: Broker, state: str, limit: int, offset: int) -> list[JobInfo]:
    """kq ``Broker.jobs``: ``dead`` from ``dead_letters``; any other state NotSupported (a
    topic is a log the group reads in order: its pending records are counted, per partition,
    not listable one by one)."""
    limit, offset = check_listing(state, limit, offset)
    if state != "dead":
        raise NotSupported(
            f"{state} records are not listable on Kafka: a topic is a log the group reads "
            "in order (see the lag per partition); dead letters are listed below"
        )
    return [dead_job(d, {"ref": d.ref}) for d in broker.dead_letters(offset + limit)[offset:]]
