"""OpenTelemetry, when installed: trace context travels in message headers.

``TracingMiddleware`` is one middleware for both sides: its ``before_push`` hook injects the
W3C ``traceparent`` of the current span into a pushed message's headers (every producer of
every backend runs it), and around handling it opens a CONSUMER span whose parent is the
producer's span. Brokers and workers add it by themselves when an SDK tracer provider is
configured (``default_middleware``); without OpenTelemetry, or without an SDK, it costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import MutableMapping
from typing import Any

from brokerq.message import Message
from brokerq.middleware import OK, Middleware

logger = logging.getLogger(__name__)

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the environment
    _trace = None  # type: ignore[assignment]


def installed() -> bool:
    return _trace is not None


def configured() -> bool:
    """True when an SDK tracer provider is set (the default proxy records nothing)."""
    if _trace is None:
        return False
    return not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to ``headers``; no-op without an active span."""
    if _trace is None or not _trace.get_current_span().get_span_context().is_valid:
        return
    _propagate.inject(headers)


class TracingMiddleware(Middleware):
    """Wraps each handling in a CONSUMER span that continues the producer's trace."""

    def __init__(self, tracer_provider: Any = None) -> None:
        if _trace is None:
            raise RuntimeError("TracingMiddleware needs opentelemetry-api installed")
        self._tracer = _trace.get_tracer("brokerq", tracer_provider=tracer_provider)
        self._local = threading.local()

    def before_push(self, queue: str, headers: dict[str, str]) -> None:
        inject(headers)

    def before_process(self, message: Message) -> None:
        parent = _propagate.extract(dict(message.headers))
        span = self._tracer.start_span(
            "brokerq process",
            context=parent,
            kind=_trace.SpanKind.CONSUMER,
            attributes={"messaging.message.id": message.id, "brokerq.attempt": message.attempt},
        )
        token = _context.attach(_trace.set_span_in_context(span))
        self._local.current = (span, token)

    def after_process(self, message: Message, outcome: str, error: BaseException | None) -> None:
        current = getattr(self._local, "current", None)
        if current is None:
            return
        self._local.current = None
        span, token = current
        span.set_attribute("brokerq.outcome", outcome)
        if error is not None:
            span.record_exception(error)
        if outcome != OK:
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, str(error or outcome)))
        _context.detach(token)
        span.end()


def default_middleware() -> list[Middleware]:
    """What every worker gets unasked: tracing, when OpenTelemetry is set up."""
    return [TracingMiddleware()] if configured() else []
