"""The sampler keeps samples per queue and charts throughput (from heartbeats) or depth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from brokerq.web.queues import Answer, Card, Queue
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
    beats = iter([(100.0, 100), (100.0, 100), (105.0, 160), (110.0, 220)])

    def card_with_counts() -> Card:
        card = Queue.card(q)
        at, processed = next(beats)
        worker = SimpleNamespace(processed=processed, last_beat=at)
        card.workers = Answer(value=[worker])  # type: ignore[list-item]
        return card

    q.card = card_with_counts  # type: ignore[method-assign]
    for _ in range(4):
        sampler.sample(q)
    svg, label = sampler.chart(q, now=110.0)
    # two samples of one beat count once: 60 jobs per 5 s beat = 12/s
    assert label.startswith("handled/s") and "(now 12.0/s)" in label
    assert "<polyline" in svg
