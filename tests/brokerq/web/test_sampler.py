"""The sampler keeps samples per queue and charts throughput (from heartbeats) or depth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from brokerq.web.queues import Answer, Queue
from brokerq.web.sampler import Sampler


def test_depth_chart_from_samples(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("memory"))
    sampler = Sampler([q], every=5, keep=900)
    with q.broker.producer() as p:
        for n in range(3):
            p.push(b"x")
            card = sampler.sample(q)
            assert card.get("pending") == n + 1
    svg, label = sampler.chart(q)
    assert label.startswith("depth") and "last 1m00s" in label  # started a moment ago
    assert "<polyline" in svg
    assert sampler.card(q, max_age=60) is card  # fresh enough: no new broker call


def test_throughput_chart_when_heartbeats_count_jobs(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("memory"))
    sampler = Sampler([q], every=5, keep=900)
    counts = iter([100, 160, 220])

    def card_with_counts() -> object:
        card = Queue.card(q)
        card.workers = Answer(value=[SimpleNamespace(processed=next(counts), last_beat=0.0)])  # type: ignore[list-item]
        return card

    q.card = card_with_counts  # type: ignore[method-assign]
    for _ in range(3):
        sampler.sample(q)
    svg, label = sampler.chart(q)
    assert label.startswith("handled/s") and "<polyline" in svg
