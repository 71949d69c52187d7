"""Trace context rides in headers and the worker continues the producer's trace."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from brokerq.embedded import MemoryBroker
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.tracing import TracingMiddleware, inject
from brokerq.worker import Worker
from tests.contract import wait_for


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_inject_is_a_no_op_without_an_active_span() -> None:
    headers: dict[str, str] = {}
    inject(headers)
    assert headers == {}


def test_consumer_span_continues_the_producer_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    broker = MemoryBroker()
    with provider.get_tracer("test").start_as_current_span("produce") as parent:
        headers: dict[str, str] = {}
        inject(headers)
        assert "traceparent" in headers
        with broker.producer() as p:
            p.push(b"ok", headers=headers)
            p.push(b"bad", headers=headers)
    worker = Worker(
        broker.source,
        middleware=[TracingMiddleware(provider)],
        retry=RetryPolicy(max_attempts=1),
    )

    def handler(m: Message) -> None:
        if m.value == b"bad":
            raise ValueError("nope")

    t = threading.Thread(target=worker.consume, args=(handler,), daemon=True)
    t.start()
    assert wait_for(lambda: len(exporter.get_finished_spans()) >= 3, 10)
    worker.stop()
    t.join(10)
    consumer = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert len(consumer) == 2
    ctx = parent.get_span_context()
    for span in consumer:
        assert span.context.trace_id == ctx.trace_id
        assert span.parent is not None and span.parent.span_id == ctx.span_id
    by_outcome = {s.attributes["brokerq.outcome"]: s for s in consumer}  # type: ignore[index]
    assert by_outcome["ok"].status.status_code == StatusCode.UNSET
    assert by_outcome["dead"].status.status_code == StatusCode.ERROR
    assert by_outcome["dead"].events[0].name == "exception"
