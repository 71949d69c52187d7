"""The Pusher injects the trace context into Kafka headers; the consumer sees it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from brokerq.message import Message
from brokerq.middleware import Middleware
from brokerq_kafka import KafkaBroker, Pusher
from tests.contract import Recorder, running, wait_for

pytestmark = pytest.mark.integration


def test_trace_context_travels_through_kafka(make_conf: Any, kafka_bootstrap: str) -> None:
    conf = make_conf()
    tracer = TracerProvider().get_tracer("test")
    with (
        tracer.start_as_current_span("produce") as span,
        Pusher(kafka_bootstrap, conf.topic, tracing=True) as pusher,
    ):
        pusher.push(b"traced", headers={"user": "1"})
    trace_id = f"{span.get_span_context().trace_id:032x}"
    rec = Recorder()
    with KafkaBroker(conf) as broker, running(broker, rec):
        assert wait_for(lambda: len(rec.seen) == 1, 60)
    msg: Message = rec.seen[0]
    assert msg.headers["user"] == "1"
    assert trace_id in msg.headers["traceparent"]


class Stamp(Middleware):
    """Adds a header before each push and records what the delivery reports said."""

    def __init__(self) -> None:
        self.reports: list[BaseException | None] = []

    def before_push(self, queue: str, headers: dict[str, str]) -> None:
        headers["stamped-for"] = queue

    def after_push(self, queue: str, error: BaseException | None) -> None:
        self.reports.append(error)


def test_pusher_runs_the_brokers_producer_hooks(make_conf: Any) -> None:
    conf = make_conf()
    stamp = Stamp()
    rec = Recorder()
    with KafkaBroker(conf) as broker:
        broker.add_middleware(stamp)
        with broker.producer() as pusher:
            for i in range(3):
                pusher.push(f"m{i}", headers={"user": str(i)} if i else None)
            pusher.flush(30)
        assert wait_for(lambda: stamp.reports == [None, None, None], 30), stamp.reports
        with running(broker, rec):
            assert wait_for(lambda: len(rec.seen) == 3, 60)
    assert all(m.headers["stamped-for"] == conf.topic for m in rec.seen)
    assert sorted(m.headers.get("user", "-") for m in rec.seen) == ["-", "1", "2"]


def test_without_hooks_the_pusher_keeps_its_fast_path(make_conf: Any) -> None:
    conf = make_conf()
    with KafkaBroker(conf) as broker, broker.producer() as pusher:
        assert not pusher._hooks  # no producer hook: no per-push header copy, no success reports
