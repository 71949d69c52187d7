"""Samples each queue every few seconds on one background thread, for the charts and cache.

Each sample keeps the counts and, when the queue's workers report it in their heartbeats, the
total of jobs they handled: the chart shows that as jobs per second (throughput). A queue whose
workers report no count is charted by its depth (pending + delayed + in flight) instead.
Pages read the latest card when it is fresh enough, so a slow broker delays a sample, never a
page load beyond one call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from brokerq.web.charts import rate_series, sparkline
from brokerq.web.present import age
from brokerq.web.queues import Card, Queue

logger = logging.getLogger(__name__)

MIN_SPAN = 60.0
"""Seconds a chart spans at least (a dashboard started a moment ago)."""


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    depth: int | None
    handled: int | None
    handled_at: float | None = None  # the freshest heartbeat's time: when ``handled`` was true


class Sampler:
    """Owns the samples and the latest card of every queue (guarded by one lock)."""

    def __init__(self, queues: Sequence[Queue], every: float, keep: float) -> None:
        self.queues = list(queues)
        self.every = every
        self.keep = keep
        self._lock = threading.Lock()
        self._latest: dict[str, Card] = {}
        self._samples: dict[str, deque[Sample]] = {
            q.slug: deque(maxlen=max(2, int(keep / every) + 1)) for q in queues
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="brokerq-web-sampler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            for q in self.queues:
                if self._stop.is_set():
                    break
                try:
                    self.sample(q)
                except Exception:
                    logger.exception("sampling %s failed", q.slug)
            self._stop.wait(self.every)

    def sample(self, queue: Queue) -> Card:
        """Read the queue now, keep the sample, return its card."""
        card = queue.card()
        handled = _handled(card)
        depth = None
        if card.stats.value is not None:
            depth = sum(card.stats.value.get(k, 0) for k in ("pending", "delayed", "in_flight"))
        with self._lock:
            self._latest[queue.slug] = card
            self._samples[queue.slug].append(Sample(card.taken_at, depth, handled, card.last_beat))
        return card

    def card(self, queue: Queue, max_age: float) -> Card:
        """The latest card if younger than ``max_age`` seconds, else a new sample."""
        with self._lock:
            card = self._latest.get(queue.slug)
        if card is not None and time.time() - card.taken_at <= max_age:
            return card
        return self.sample(queue)

    def forget(self, queue: Queue) -> None:
        """Drop the latest card of ``queue`` (an action changed it): the next page reads anew."""
        with self._lock:
            self._latest.pop(queue.slug, None)

    def chart(self, queue: Queue, now: float | None = None) -> tuple[Markup, str]:
        """``(svg, what it shows)`` over the samples kept: the last ``keep`` seconds, or since
        the first sample when the dashboard started more recently (at least a minute)."""
        now = time.time() if now is None else now
        with self._lock:
            samples = list(self._samples[queue.slug])
        first = samples[0].at if samples else now
        span = min(self.keep, max(MIN_SPAN, now - first))
        window = age(span)
        # counts change once per heartbeat: time them by the beat, one point per beat
        beats = {s.handled_at: s.handled for s in samples if s.handled is not None and s.handled_at}
        counted = sorted(beats.items())
        if len(counted) >= 2:
            rates = rate_series([(t, int(h)) for t, h in counted])
            latest = rates[-1][1] if rates else 0.0
            label = f"handled/s, last {window} (now {latest:.1f}/s)"
            return sparkline(rates, span=span, now=now, label=label), label
        depth = [(s.at, float(s.depth)) for s in samples if s.depth is not None]
        label = f"depth (pending + delayed + in flight), last {window}"
        return sparkline(depth, span=span, now=now, label=label), label


def _handled(card: Card) -> int | None:
    """Jobs handled so far by the queue's live workers, when their heartbeats say."""
    if card.workers.value is None:
        return None
    counts = [getattr(w, "processed", None) for w in card.workers.value]
    known = [int(c) for c in counts if isinstance(c, int)]
    return sum(known) if known else None
