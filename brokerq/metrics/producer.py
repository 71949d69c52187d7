"""Producer metrics through the producer hooks (``Middleware.after_push``).

    pm = ProducerMetrics()
    broker.add_middleware(pm)        # every producer of this broker reports to it
    registry.register(pm)            # or prometheus_client.REGISTRY

Exported (label ``queue`` = the topic, tube or queue pushed to):

    brokerq_pushes_total{queue, outcome="ok|failed"}   the broker accepted / refused a push
    brokerq_push_failures_total{queue, reason}         refusals by error type
                                                       (DeliveryError, MessageTooLarge, ...)
    brokerq_replica_writes_failed_total{queue, node}   dq: copies a node refused (the push
                                                       may still have met min_written)
    brokerq_kafka_producer_queue_messages{queue}       Kafka: messages waiting in librdkafka's
    brokerq_kafka_producer_queue_bytes{queue}          queue (``msg_cnt`` / ``msg_size`` of its
                                                       statistics, summed over the producers)

``after_push`` runs once per push (on Kafka from the delivery-report thread, once the
broker acknowledged or refused the record); counts are kept per thread without a lock,
as in brokerq.metrics.recorder. ``brokerq run`` registers one for its broker, so pushes
made by handlers through it are counted.

librdkafka's statistics are switched on (``statistics.interval.ms``) only because this
middleware overrides ``client_stats``: a producer without metrics pays nothing. Every
``stats_interval`` seconds (5 by default) each Kafka producer reports; a producer silent for
three intervals (closed) is dropped from the gauges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from brokerq.metrics.redact import redact
from brokerq.middleware import Middleware


class ProducerMetrics(Middleware):
    """Counts pushes by queue and outcome, and failures by reason; a prometheus_client collector."""

    def __init__(self, stats_interval: float = 5.0) -> None:
        self._local = threading.local()
        self._shards: list[dict[tuple[str, str], int]] = []
        self._lock = threading.Lock()
        self.client_stats_interval = stats_interval
        self._clients: dict[tuple[str, str], tuple[float, int, int]] = {}  # (queue, client)
        self._replicas: dict[tuple[str, str], int] = {}  # (queue, node) -> failed writes

    def client_stats(self, queue: str, stats: Mapping[str, Any]) -> None:
        """librdkafka statistics of one producer: keep its queue depth (messages, bytes)."""
        client = str(stats.get("name", ""))
        depth = (time.monotonic(), int(stats.get("msg_cnt", 0)), int(stats.get("msg_size", 0)))
        with self._lock:
            self._clients[(queue, client)] = depth

    def replica_failed(self, queue: str, node: str, error: BaseException) -> None:
        with self._lock:
            self._replicas[(queue, node)] = self._replicas.get((queue, node), 0) + 1

    def queue_depth(self) -> dict[str, tuple[int, int]]:
        """Per queue: (messages, bytes) waiting in the live Kafka producers' queues."""
        stale = time.monotonic() - 3 * self.client_stats_interval
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for key, (at, n, size) in list(self._clients.items()):
                if at < stale:
                    del self._clients[key]
                    continue
                count, total = out.get(key[0], (0, 0))
                out[key[0]] = (count + n, total + size)
        return out

    def after_push(self, queue: str, error: BaseException | None) -> None:
        try:
            counts: dict[tuple[str, str], int] = self._local.counts
        except AttributeError:
            counts = self._local.counts = {}
            with self._lock:
                self._shards.append(counts)
        key = (queue, "" if error is None else type(error).__name__)
        counts[key] = counts.get(key, 0) + 1

    def totals(self) -> dict[tuple[str, str], int]:
        """Pushes by (queue, reason); reason "" means accepted."""
        with self._lock:
            shards = list(self._shards)
        out: dict[tuple[str, str], int] = {}
        for counts in shards:
            for key, n in list(counts.items()):
                out[key] = out.get(key, 0) + n
        return out

    def describe(self) -> Iterable[Metric]:
        return self._families({}) + self._backend_families({}, {})

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            replicas = dict(self._replicas)
        return self._families(self.totals()) + self._backend_families(replicas, self.queue_depth())

    def _backend_families(
        self, replicas: dict[tuple[str, str], int], depth: dict[str, tuple[int, int]]
    ) -> list[Metric]:
        failed = CounterMetricFamily(
            "brokerq_replica_writes_failed",
            "Replica writes a node refused (dq: one beanstalkd node), by queue and node.",
            labels=["queue", "node"],
        )
        for (queue, node), n in sorted(replicas.items()):
            failed.add_metric([redact(queue), redact(node)], n)
        messages = GaugeMetricFamily(
            "brokerq_kafka_producer_queue_messages",
            "Messages waiting in librdkafka's producer queue (statistics msg_cnt).",
            labels=["queue"],
        )
        size = GaugeMetricFamily(
            "brokerq_kafka_producer_queue_bytes",
            "Bytes waiting in librdkafka's producer queue (statistics msg_size).",
            labels=["queue"],
        )
        for queue, (n, b) in sorted(depth.items()):
            messages.add_metric([redact(queue)], n)
            size.add_metric([redact(queue)], b)
        return [failed, messages, size]

    def _families(self, totals: dict[tuple[str, str], int]) -> list[Metric]:
        pushes = CounterMetricFamily(
            "brokerq_pushes",
            "Pushes the broker accepted (ok) or refused (failed), by queue.",
            labels=["queue", "outcome"],
        )
        failures = CounterMetricFamily(
            "brokerq_push_failures",
            "Pushes the broker refused, by queue and error type.",
            labels=["queue", "reason"],
        )
        by_outcome: dict[tuple[str, str], int] = {}
        for (queue, reason), n in sorted(totals.items()):
            outcome = "failed" if reason else "ok"
            by_outcome[(queue, outcome)] = by_outcome.get((queue, outcome), 0) + n
            if reason:
                failures.add_metric([redact(queue), reason], n)
        for (queue, outcome), n in by_outcome.items():
            pushes.add_metric([redact(queue), outcome], n)
        return [pushes, failures]
