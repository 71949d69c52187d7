"""Worker metrics as a Middleware, cheap enough for the hot path, exported by prometheus_client.

Each worker thread records into its own ``_Shard`` (plain ints and floats, no lock);
``collect()``, called by prometheus_client at scrape time, sums the shards into metric
families. prometheus_client's own ``Counter`` and ``Histogram`` take a lock per update
(measured here: ~0.5 us per counter ``inc``, ~1.2 us per histogram ``observe``, ~5 us per
message for the set below), as much as a kq worker spends on a whole message (~3 us).

What the hooks still cost is two clock reads and two histogram buckets per message; with
``sample=N`` only one message in N per thread is timed (age and duration histograms), while
the counters, the in-flight gauge and the lateness of delayed jobs stay exact. The hot path
reads no clock for health: brokerq.metrics.exporter tells a stuck thread by its finished
count not moving. bench/metrics_overhead.py measures the cost.

Exported (labels ``worker`` = the config's ``name``, ``queue`` = topic / tube / sqlite queue):

    brokerq_messages_processed_total{outcome="ok|retry|dead"}  counter
    brokerq_handler_duration_seconds                            histogram (handler + settle;
                                                                a batch: its whole call)
                                                                sampled with sample > 1
    brokerq_messages_in_flight                                  gauge
    brokerq_message_age_seconds                                 histogram: start - created_at
                                                                (sampled with sample > 1)
    brokerq_delayed_lateness_seconds                            histogram: start - not_before
    brokerq_delayed_early_total                                 counter: started before not_before
    brokerq_redeliveries_total                                  counter: came back after a crash
                                                                or an expired lease

A reader may see one observation half-applied (its bucket counted, its sum not yet): each
histogram's count is derived from its buckets, so count and ``+Inf`` always agree.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from brokerq.message import Message
from brokerq.middleware import DEAD, OK, RETRY, Middleware

INF = float("inf")
# Upper bounds in seconds. Handlers: Prometheus' defaults widened to 5 minutes.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, INF)  # fmt: skip
# Age: from "picked up at once" to "a day in the queue".
AGE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, INF)  # fmt: skip
# Lateness: go-queue fires up to 1 s early; brokerq's target is p99 <= 50 ms late, never early.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, INF)  # fmt: skip

OUTCOMES = (OK, RETRY, DEAD)

# Hot-path aliases. One clock for everything: time.time() is needed for the age anyway, and a
# second clock would cost another ~0.1 us per message (durations clamp at 0 if it steps back).
_now = time.time
_bucket = bisect_left
_AGE_0, _DURATION_0 = AGE_BUCKETS[0], DURATION_BUCKETS[0]  # the common case skips the bisect


class _Shard:
    """One thread's counts; only that thread writes them."""

    __slots__ = (
        "age",
        "age_sum",
        "dead",
        "duration",
        "duration_sum",
        "early",
        "in_flight",
        "late",
        "late_sum",
        "ok",
        "redeliveries",
        "retry",
        "skip",
        "started",
        "thread",
        "timed",
    )

    def __init__(self) -> None:
        self.ok = self.retry = self.dead = 0
        self.duration = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.age = [0] * len(AGE_BUCKETS)
        self.age_sum = 0.0
        self.late = [0] * len(LATENESS_BUCKETS)
        self.late_sum = 0.0
        self.early = 0
        self.redeliveries = 0
        self.in_flight = 0  # messages this thread is handling (a batch handler: several)
        self.skip = 0  # messages to leave untimed before the next timed one (sampling)
        self.timed = 0  # timed messages in flight (a batch: several), since ``started``
        self.started = 0.0
        self.thread = threading.current_thread()

    @property
    def done(self) -> int:
        return self.ok + self.retry + self.dead


@dataclass(frozen=True)
class Busy:
    """A thread handling messages now: its name, how many, and how many it has finished in
    all (unchanged between two looks: no progress). ``key`` tells threads apart."""

    key: int
    thread: str
    in_flight: int
    done: int


RETRIED_KEPT = 10_000  # ids of messages this process sent to retry, remembered at most


def is_redelivery(message: Message, retried_here: Container[str] = ()) -> bool:
    """True when this attempt exists because a worker died or a lease ran out.

    A retry decided by a worker either carries ``not_before`` (its backoff: sqlite, memory,
    dq) or comes back to the same process (Kafka's in-process retry heap: ``retried_here``).
    An attempt above 1 with neither was handed out again by the broker on its own; that needs
    a backend that counts redeliveries as attempts (``Capabilities.counts_redeliveries``).
    """
    return message.attempt > 1 and message.not_before is None and message.id not in retried_here


class WorkerMetrics(Middleware):
    """Records handling metrics per thread; register it with a prometheus_client registry.

    ``WorkerMetrics(worker, queue)`` is a Middleware (give it to ``Worker(middleware=...)``)
    and a prometheus_client collector (``registry.register(m)``).
    """

    def __init__(self, worker: str, queue: str, *, sample: int = 1) -> None:
        if sample < 1:
            raise ValueError("sample must be at least 1 (1: time every message)")
        self.labels = (worker, queue)
        self.sample = sample
        self._skip = sample - 1
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._lock = threading.Lock()
        self._retried: dict[str, None] = {}  # insertion-ordered set, oldest first

    # -- hot path (worker threads) ------------------------------------------------------------
    def _shard(self) -> _Shard:
        shard = _Shard()
        self._local.shard = shard
        with self._lock:
            self._shards.append(shard)
        return shard

    def before_process(self, message: Message) -> None:
        try:
            s: _Shard = self._local.shard
        except AttributeError:
            s = self._shard()
        s.in_flight += 1
        not_before = message.not_before
        if s.skip:  # not timed (sample > 1): counters and the lateness check only
            s.skip -= 1
            if not_before is None:
                if message.attempt > 1 and message.id not in self._retried:  # is_redelivery
                    s.redeliveries += 1
                return
            now = _now()
        else:
            s.skip = self._skip
            now = _now()
            if not s.timed:
                s.started = now
            s.timed += 1
            age = now - message.created_at
            s.age[0 if age <= _AGE_0 else _bucket(AGE_BUCKETS, age)] += 1
            s.age_sum += age
            if not_before is None:
                if message.attempt > 1 and message.id not in self._retried:  # is_redelivery
                    s.redeliveries += 1
                return
        late = now - not_before  # every delayed job, sampled or not: "never early" is exact
        s.late[_bucket(LATENESS_BUCKETS, late)] += 1
        s.late_sum += late
        if late < 0.0:
            s.early += 1

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        try:
            s: _Shard = self._local.shard
        except AttributeError:
            s = self._shard()
        if outcome == OK:
            s.ok += 1
        elif outcome == RETRY:
            s.retry += 1
            self._remember_retry(message.id)
        else:
            s.dead += 1
        if s.in_flight:  # else no before_process: a poison message or another thread's (watchdog)
            s.in_flight -= 1
            if s.timed:
                s.timed -= 1
                took = _now() - s.started
                if took < 0.0:  # the wall clock stepped back
                    took = 0.0
                s.duration[0 if took <= _DURATION_0 else _bucket(DURATION_BUCKETS, took)] += 1
                s.duration_sum += took

    def _remember_retry(self, message_id: str) -> None:
        with self._lock:
            retried = self._retried
            retried[message_id] = None
            if len(retried) > RETRIED_KEPT:
                del retried[next(iter(retried))]

    # -- readers (scrape thread, /healthz) ----------------------------------------------------
    def _all(self) -> list[_Shard]:
        with self._lock:
            return list(self._shards)

    def busy(self) -> list[Busy]:
        """Threads handling messages now (brokerq.metrics.exporter tells a stuck one by its
        ``done`` not moving; the hot path reads no clock for that)."""
        return [
            Busy(id(s), s.thread.name, s.in_flight, s.done)
            for s in self._all()
            if s.in_flight and s.thread.is_alive()
        ]

    def totals(self) -> dict[str, int]:
        """Processed messages by outcome since the worker started."""
        shards = self._all()
        return {
            OK: sum(s.ok for s in shards),
            RETRY: sum(s.retry for s in shards),
            DEAD: sum(s.dead for s in shards),
        }

    def describe(self) -> Iterable[Metric]:
        return self._families(())

    def collect(self) -> Iterable[Metric]:
        return self._families(self._all())

    def _families(self, shards: Iterable[_Shard]) -> Iterator[Metric]:
        shards = list(shards)
        names = ["worker", "queue"]
        processed = CounterMetricFamily(
            "brokerq_messages_processed",
            "Messages handled, by outcome (ok, retry, dead).",
            labels=[*names, "outcome"],
        )
        for outcome, n in (self.totals() if shards else {}).items():
            processed.add_metric([*self.labels, outcome], n)
        yield processed
        yield self._histogram(
            "brokerq_handler_duration_seconds",
            "Time from the start of handling to the end of the handler's middleware, seconds.",
            DURATION_BUCKETS,
            [(s.duration, s.duration_sum) for s in shards],
        )
        in_flight = GaugeMetricFamily(
            "brokerq_messages_in_flight", "Messages being handled now.", labels=names
        )
        if shards:
            busy = sum(s.in_flight for s in shards if s.thread.is_alive())
            in_flight.add_metric(self.labels, busy)
        yield in_flight
        yield self._histogram(
            "brokerq_message_age_seconds",
            "Start of handling minus the message's created_at, seconds.",
            AGE_BUCKETS,
            [(s.age, s.age_sum) for s in shards],
        )
        yield self._histogram(
            "brokerq_delayed_lateness_seconds",
            "Start of handling minus not_before (delayed, scheduled and retried jobs), seconds.",
            LATENESS_BUCKETS,
            [(s.late, s.late_sum) for s in shards],
        )
        yield self._counter(
            "brokerq_delayed_early",
            "Jobs whose handling started before their not_before (expected: none).",
            sum(s.early for s in shards) if shards else None,
        )
        yield self._counter(
            "brokerq_redeliveries",
            "Deliveries handed out again after a worker crash or an expired lease.",
            sum(s.redeliveries for s in shards) if shards else None,
        )

    def _counter(self, name: str, doc: str, value: int | None) -> Metric:
        family = CounterMetricFamily(name, doc, labels=["worker", "queue"])
        if value is not None:
            family.add_metric(self.labels, value)
        return family

    def _histogram(
        self,
        name: str,
        doc: str,
        bounds: tuple[float, ...],
        parts: list[tuple[list[int], float]],
    ) -> Metric:
        family = HistogramMetricFamily(name, doc, labels=["worker", "queue"])
        if not parts:
            return family
        counts = [0] * len(bounds)
        total = 0.0
        for buckets, part_sum in parts:
            for i, n in enumerate(list(buckets)):
                counts[i] += n
            total += part_sum
        cumulative, running = [], 0
        for bound, n in zip(bounds, counts, strict=True):
            running += n
            cumulative.append(("+Inf" if bound == INF else repr(bound), float(running)))
        family.add_metric(self.labels, cumulative, total)
        return family
