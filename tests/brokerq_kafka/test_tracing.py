"""The Pusher injects the trace context into Kafka headers; the consumer sees it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from brokerq.message import Message
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
