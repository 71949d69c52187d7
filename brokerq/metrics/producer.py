"""Producer metrics through the producer hooks (``Middleware.after_push``).

    pm = ProducerMetrics()
    broker.add_middleware(pm)        # every producer of this broker reports to it
    registry.register(pm)            # or prometheus_client.REGISTRY

Exported (label ``queue`` = the topic, tube or queue pushed to):

    brokerq_pushes_total{queue, outcome="ok|failed"}   the broker accepted / refused a push
    brokerq_push_failures_total{queue, reason}         refusals by error type
                                                       (DeliveryError, MessageTooLarge, ...)

``after_push`` runs once per push (on Kafka from the delivery-report thread, once the
broker acknowledged or refused the record); counts are kept per thread without a lock,
as in brokerq.metrics.recorder. ``brokerq run`` registers one for its broker, so pushes
made by handlers through it are counted.

Not here yet (they need numbers only the backends have): librdkafka's queue depth from its
statistics callback, and dq replica writes failed per node.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from brokerq.metrics.redact import redact
from brokerq.middleware import Middleware


class ProducerMetrics(Middleware):
    """Counts pushes by queue and outcome, and failures by reason; a prometheus_client collector."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._shards: list[dict[tuple[str, str], int]] = []
        self._lock = threading.Lock()

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
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(self.totals())

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
