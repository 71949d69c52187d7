"""Helpers for the dq tests: run a Consumer in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from brokerq_beanstalk import Consumer, DqConf
from tests.contract import consuming_in_thread


@contextmanager
def consuming(conf: DqConf, handler: Callable[..., Any]) -> Iterator[Consumer]:
    with consuming_in_thread(Consumer(conf, shutdown_timeout=10.0), handler) as consumer:
        yield consumer
