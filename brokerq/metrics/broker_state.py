"""Broker state at scrape time: a prometheus_client collector over ``Broker.stats()``.

``stats()`` is called in a background thread, at most once per ``cache`` seconds and never
waited for longer than ``scrape_timeout`` (brokerq.metrics.bounded): a slow or unreachable
broker makes a scrape report the last values it has, with ``brokerq_broker_up 0``, and never
hangs it.

How ``stats()`` keys map to metrics (labels ``worker``, ``queue`` on all):

    pending, delayed, in_flight, dead (any plain key)  brokerq_queue_messages{state}
        deduplicated: each job counted once, whatever the number of replicas
    oldest_age_seconds                                 brokerq_queue_oldest_age_seconds
        seconds the oldest job that may run now has waited since it became runnable
    paused (1 or 0)                                    brokerq_queue_paused
    lag:<partition>                                    brokerq_kafka_lag{partition}
    node:<endpoint>:<state>                            brokerq_queue_node_messages{node, state}
        one replica's copies (dq: per beanstalkd node)

plus ``brokerq_broker_up`` (1 when the last ``stats()`` answered in time) and
``brokerq_broker_stats_age_seconds`` (how old the values served are). Dead letters are
``brokerq_queue_messages{state="dead"}``. Label values go through brokerq.metrics.redact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from brokerq.metrics.bounded import CachedCall
from brokerq.metrics.redact import redact

logger = logging.getLogger(__name__)

OLDEST_AGE = "oldest_age_seconds"
PAUSED = "paused"
LAG_PREFIX = "lag:"
NODE_PREFIX = "node:"


class BrokerState:
    """Collector of ``brokerq_queue_*`` gauges from a ``stats()`` callable (usually
    ``broker.stats``); ``cache`` and ``timeout`` in seconds."""

    def __init__(
        self,
        stats: Callable[[], Mapping[str, int | float]],
        worker: str,
        queue: str,
        *,
        cache: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self.labels = (worker, queue)
        self.call: CachedCall[Mapping[str, int | float]] = CachedCall(
            stats, ttl=cache, timeout=timeout, name="broker stats"
        )

    def describe(self) -> Iterable[Metric]:
        return self._families(None, up=None, age=None)

    def collect(self) -> Iterable[Metric]:
        result, fresh = self.call.get()
        if self.call.unsupported:  # the backend keeps no stats: export nothing about it
            return self._families(None, up=None, age=None)
        up = result is not None and fresh and result.ok
        good = self.call.last_good
        if good is None:
            return self._families(None, up=up, age=None)
        return self._families(good.value, up=up, age=good.age())

    def _families(
        self, stats: Mapping[str, int | float] | None, *, up: bool | None, age: float | None
    ) -> Iterator[Metric]:
        names = ["worker", "queue"]
        labels = list(self.labels)
        queue = GaugeMetricFamily(
            "brokerq_queue_messages",
            "Messages in the broker by state (pending, delayed, in_flight, dead); "
            "each job counted once.",
            labels=[*names, "state"],
        )
        oldest = GaugeMetricFamily(
            "brokerq_queue_oldest_age_seconds",
            "Age of the oldest message waiting to be handled, seconds.",
            labels=names,
        )
        paused = GaugeMetricFamily(
            "brokerq_queue_paused",
            "1 while the queue is paused (brokerq pause), 0 otherwise.",
            labels=names,
        )
        lag = GaugeMetricFamily(
            "brokerq_kafka_lag",
            "Messages after the consumer group's committed offset, per partition.",
            labels=[*names, "partition"],
        )
        node = GaugeMetricFamily(
            "brokerq_queue_node_messages",
            "Copies held by one replica (dq: one beanstalkd node), by state.",
            labels=[*names, "node", "state"],
        )
        for key, value in (stats or {}).items():
            if key == OLDEST_AGE:
                oldest.add_metric(labels, float(value))
            elif key == PAUSED:
                paused.add_metric(labels, float(value))
            elif key.startswith(LAG_PREFIX):
                lag.add_metric([*labels, redact(key[len(LAG_PREFIX) :])], float(value))
            elif key.startswith(NODE_PREFIX):
                endpoint, _, state = key[len(NODE_PREFIX) :].rpartition(":")
                node.add_metric([*labels, redact(endpoint), state], float(value))
            elif ":" not in key:
                queue.add_metric([*labels, redact(key)], float(value))
        yield queue
        yield oldest
        yield paused
        yield lag
        yield node
        up_family = GaugeMetricFamily(
            "brokerq_broker_up",
            "1 when the broker's stats() answered within scrape_timeout at the last try.",
            labels=names,
        )
        age_family = GaugeMetricFamily(
            "brokerq_broker_stats_age_seconds",
            "How old the broker state served is, seconds (grows while the broker is down).",
            labels=names,
        )
        if up is not None:
            up_family.add_metric(labels, 1.0 if up else 0.0)
        if age is not None:
            age_family.add_metric(labels, age)
        yield up_family
        yield age_family
