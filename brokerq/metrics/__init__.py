"""Prometheus metrics, health endpoints and live stats for brokerq workers.

Modules (all but ``config`` need the ``metrics`` extra: ``pip install brokerq[metrics]``):

- ``config``: the ``metrics:`` YAML section (``MetricsConf``); loopback unless written.
- ``recorder``: ``WorkerMetrics``, the per-message middleware and collector.
- ``broker_state``: ``BrokerState``, gauges from ``Broker.stats()`` at scrape time.
- ``producer``: ``ProducerMetrics``, push counters through the producer hooks.
- ``scheduler``: ``SchedulerMetrics``, the hook point for the scheduler.
- ``server``: ``MetricsServer``, /metrics, /healthz, /readyz on a thread of its own.
- ``exporter``: ``Exporter``, all of the above for ``brokerq run``.
- ``live``: ``brokerq stats`` (plain, ``--json``, ``--watch``).

Metric names are listed in README.md ("Metrics") and are kept stable.
"""

from brokerq.metrics.config import MetricsConf, parse_listen

__all__ = ["MetricsConf", "parse_listen"]
