"""Everything ``brokerq run`` serves when the worker YAML has a ``metrics:`` section.

    exporter = Exporter(cfg.metrics, worker="orders", queue="orders", broker=broker)
    worker = Worker(broker.source, middleware=[*mine, *exporter.middleware])
    exporter.start(worker)           # binds; ConfigError if the address is taken
    try:
        worker.consume(handler)
    finally:
        exporter.close()

Health (``/healthz``): 200 while the worker runs and no handler has been running longer than
``stuck_after`` (default: the worker's time limit + grace + 30 s, past which its watchdog
should have ended the handler: a thread still busy then is stuck for good; no check when the
worker has no time limit); 503 naming the stuck thread otherwise, or when worker threads
died. Readiness
(``/readyz``): 200 when ``broker.check()`` answered within ``scrape_timeout`` (cached 1 s).

The registry also holds prometheus_client's process collector (CPU, memory, open files),
``brokerq_worker_info``, producer metrics for pushes through ``broker`` (brokerq.metrics.producer)
and ``exporter.scheduler`` (brokerq.metrics.scheduler), the hook a scheduler running in this
process reports its fires to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from pydantic import BaseModel

from brokerq.broker import Broker
from brokerq.metrics.bounded import CachedCall
from brokerq.metrics.broker_state import BrokerState
from brokerq.metrics.config import MetricsConf
from brokerq.metrics.producer import ProducerMetrics
from brokerq.metrics.recorder import WorkerMetrics
from brokerq.metrics.scheduler import SchedulerMetrics
from brokerq.metrics.server import MetricsServer
from brokerq.middleware import Middleware
from brokerq.schedule.scheduler import FireHook

WORKER_THREAD_PREFIX = "brokerq-worker-"  # brokerq.worker names its threads so
READY_CACHE = 1.0
STUCK_MARGIN = 30.0  # seconds past time_limit + grace before a busy thread counts as stuck


class Watched(Protocol):
    """What health needs from a worker (brokerq.worker.Worker has these)."""

    concurrency: int
    time_limit: float | None
    time_limit_grace: float

    @property
    def stopping(self) -> bool: ...


def queue_label(section: BaseModel | Any) -> str:
    """The ``queue`` label for a broker config section: its topic, tube(s) or queue name."""
    for attr in ("topic", "queue", "tube"):
        value = getattr(section, attr, None)
        if isinstance(value, str) and value:
            return value
    tubes = sorted({getattr(n, "tube", "") for n in getattr(section, "beanstalks", None) or []})
    return ",".join(t for t in tubes if t) or "default"


class _Info:
    def __init__(self, worker: str, queue: str, broker: str) -> None:
        self.values = {"worker": worker, "queue": queue, "broker": broker}

    def collect(self) -> Iterable[Metric]:
        from brokerq import __version__

        info = InfoMetricFamily("brokerq_worker", "The worker's config name, queue and broker.")
        info.add_metric([], {**self.values, "version": __version__})
        return [info]


class Exporter:
    """The registry, the worker middleware, the broker-state collector and the HTTP server."""

    def __init__(self, conf: MetricsConf, *, worker: str, queue: str, broker: Broker) -> None:
        self.conf = conf
        self.registry = CollectorRegistry()
        self.worker_metrics = WorkerMetrics(worker, queue, sample=conf.sample)
        self.broker_state = BrokerState(
            broker.stats, worker, queue, cache=conf.cache, timeout=conf.scrape_timeout
        )
        self.producer_metrics = ProducerMetrics()
        broker.add_middleware(self.producer_metrics)  # pushes made through this broker
        self.scheduler = SchedulerMetrics(self.registry)  # for a scheduler in this process
        self.registry.register(self.worker_metrics)
        self.registry.register(self.broker_state)
        self.registry.register(self.producer_metrics)
        self.registry.register(_Info(worker, queue, getattr(broker, "name", type(broker).__name__)))
        ProcessCollector(registry=self.registry)
        self._ready: CachedCall[None] = CachedCall(
            broker.check, ttl=READY_CACHE, timeout=conf.scrape_timeout, name="broker check"
        )
        self._worker: Watched | None = None
        self._progress: dict[int, tuple[int, float]] = {}  # thread key -> (done, busy since)
        self._lock = threading.Lock()
        self.server = MetricsServer(conf, self.registry, health=self.health, ready=self.ready)

    @property
    def on_fire(self) -> FireHook:
        """The scheduler's hook (brokerq.schedule.scheduler.FireHook) into these metrics."""
        return self.scheduler.hook

    @property
    def middleware(self) -> Sequence[Middleware]:
        return [self.worker_metrics]

    def start(self, worker: Watched | None = None) -> None:
        """Start serving (binds now); ``worker`` is what /healthz watches."""
        self._worker = worker
        self.server.start()

    def close(self) -> None:
        self.server.close()

    def stuck_after(self) -> float | None:
        """Seconds after which a busy handler is stuck: ``stuck_after``, else derived from the
        watched worker's time limit (None: no limit, no check)."""
        if self.conf.stuck_after is not None:
            return self.conf.stuck_after
        worker = self._worker
        if worker is None or worker.time_limit is None:
            return None
        return worker.time_limit + worker.time_limit_grace + STUCK_MARGIN

    def health(self) -> tuple[bool, str]:
        """(alive, reason): the process answers, its worker threads run and none is stuck.

        A thread is stuck when it has been busy without finishing a message for longer than
        ``stuck_after``, counted from the first probe that saw it so (probes every few
        seconds, as Kubernetes sends them, make that the time it got stuck).
        """
        limit = self.stuck_after()
        now = time.monotonic()
        seen: dict[int, tuple[int, float]] = {}
        names: dict[int, str] = {}
        for b in self.worker_metrics.busy():
            names[b.key] = b.thread
            done, since = self._progress.get(b.key, (b.done, now))
            if done != b.done:
                since = now  # it finished something since the last look
            seen[b.key] = (b.done, since)
        with self._lock:
            self._progress = seen  # threads no longer busy are forgotten
        if limit is not None:
            stuck = [(now - since, key) for key, (_, since) in seen.items() if now - since > limit]
            if stuck:
                seconds, key = max(stuck)
                return False, (
                    f"stuck: {names[key]} has not finished a message for {seconds:.0f}s "
                    f"(stuck_after={limit:.0f}s)"
                )
        worker = self._worker
        if worker is not None and not worker.stopping:
            alive = sum(
                1
                for t in threading.enumerate()
                if t.name.startswith(WORKER_THREAD_PREFIX) and t.is_alive()
            )
            if 0 < alive < worker.concurrency:
                return (
                    False,
                    f"{worker.concurrency - alive} of {worker.concurrency} worker threads died",
                )
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """(ready, reason): the broker answered check() within scrape_timeout."""
        result, fresh = self._ready.get()
        if result is None or not fresh:
            return False, f"broker check did not answer within {self.conf.scrape_timeout:g}s"
        if result.error is not None:
            return False, f"broker: {result.error}"
        return True, "ok"
