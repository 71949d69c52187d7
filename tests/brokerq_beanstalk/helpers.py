"""Helpers for the dq tests: run a Consumer in a thread, percentiles."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from brokerq_beanstalk import Consumer, DqConf


@contextmanager
def consuming(conf: DqConf, handler: Callable[..., Any]) -> Iterator[Consumer]:
    consumer = Consumer(conf, shutdown_timeout=10.0)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            consumer.consume(handler)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        thread.join(30)
        assert not thread.is_alive(), "consumer did not stop"
        assert not errors, errors


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
