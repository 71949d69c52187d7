"""Every measure, in the order a full run takes them (``python -m bench NAME`` runs one)."""

from __future__ import annotations

from bench.measure import Measure
from bench.measures import (
    dq_at,
    dq_many,
    dq_rates,
    dq_rss,
    embedded,
    kq_batch,
    kq_consume,
    kq_peers,
    kq_procs,
    kq_push,
    metrics,
    sched,
    worker,
)

MEASURES: tuple[Measure, ...] = (
    kq_push.MEASURE,
    kq_consume.MEASURE,
    kq_batch.MEASURE,
    kq_procs.MEASURE,
    kq_peers.MEASURE,
    dq_rates.MEASURE,
    dq_many.MEASURE,
    dq_at.MEASURE,
    embedded.MEASURE,
    dq_rss.MEASURE,
    kq_batch.MEASURE_RSS,
    metrics.MEASURE,
    kq_push.MEASURE_NO_ID,
    worker.MEASURE,
    sched.MEASURE,
)
