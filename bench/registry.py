"""Every measure, in the order a full run takes them (``python -m bench NAME`` runs one)."""

from __future__ import annotations

from bench.measure import Measure
from bench.measures import dq_at, dq_rates, dq_rss, embedded, kq_consume, kq_push, worker

MEASURES: tuple[Measure, ...] = (
    kq_push.MEASURE,
    kq_consume.MEASURE,
    dq_rates.MEASURE,
    dq_at.MEASURE,
    embedded.MEASURE,
    dq_rss.MEASURE,
    kq_push.MEASURE_NO_ID,
    worker.MEASURE,
)
