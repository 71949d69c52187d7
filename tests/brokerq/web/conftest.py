"""Dashboards over real queues: ``make_config(kind)`` writes a worker YAML for memory, sqlite,
kq or dq (kq and dq on this test's unique topic / tube / Redis prefix from tests/services.py),
``fill(queue)`` puts jobs in it (2 pending, 1 delayed where supported, 1 dead letter whose
payload is ``<script>``), ``client(...)`` serves the app with Starlette's TestClient."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from brokerq.broker import Broker
from brokerq.outcome import Failure
from brokerq.web.app import create_app
from brokerq.web.queues import Queue, open_queues
from brokerq.web.settings import WebSettings

KINDS = ["memory", "sqlite", "kq", "dq"]
SCRIPT = b"<script>alert('x')</script>"
BASE_URL = "http://127.0.0.1"


def section(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, queue: str
) -> dict[str, Any]:
    if kind == "memory":
        return {"embedded": {"backend": "memory", "queue": queue}}
    if kind == "sqlite":
        return {"embedded": {"path": str(tmp_path / "jobs.db"), "queue": queue}}
    if kind == "kq":
        from brokerq.testing.servers import create_topic

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = request.getfixturevalue("kafka_topic")
        name = request.getfixturevalue("unique_name")
        create_topic(bootstrap, f"{topic}.dlq", 1)
        return {
            "kq": {
                "brokers": bootstrap,
                "topic": topic,
                "group": f"g-{name}",
                "offset": "first",
                "client_config": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
            }
        }
    if kind == "dq":
        endpoints = request.getfixturevalue("beanstalkd_endpoints")
        tube = request.getfixturevalue("beanstalk_tube")
        return {
            "dq": {
                "beanstalks": [{"endpoint": e, "tube": tube} for e in endpoints],
                "redis": {
                    "url": request.getfixturevalue("redis_url"),
                    "prefix": request.getfixturevalue("redis_prefix"),
                },
                "claim_ttl": "3s",
            }
        }
    raise ValueError(kind)


@pytest.fixture
def make_config(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Path]:
    def make(kind: str, name: str = "jobs", queue: str = "default") -> Path:
        data = {"name": name, "handler": "tests.brokerq.web.conftest:handle"}
        data.update(section(kind, request, tmp_path, queue))
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make


def handle(value: bytes) -> None:
    """The configs' handler (never imported by the dashboard)."""


def fill(broker: Broker, *, dead: bool = True, pending: int = 2) -> str | None:
    """Push ``pending`` jobs and a delayed one, and dead-letter a ``<script>`` job; its id."""
    with broker.producer() as producer:
        if dead:
            producer.push(SCRIPT, headers={"x-api-token": "hunter2", "trace": "abc"})
            producer.flush(30)
    dead_id = None
    if dead:
        with broker.source() as source:
            deadline = time.monotonic() + 60
            delivery = None
            while delivery is None and time.monotonic() < deadline:
                delivery = source.receive(1.0)
            assert delivery is not None, "the job to dead-letter never arrived"
            assert delivery.message.value == SCRIPT
            source.dead(delivery, Failure("ValueError", "bad <b>input</b>"))
            dead_id = delivery.message.id
    with broker.producer() as producer:
        for i in range(pending):
            producer.push(f'{{"n": {i}}}')
        producer.flush(30)
    try:
        with broker.delay_producer() as delayed:
            delayed.delay(b"later", 3600)
    except Exception:
        pass  # kq has no delayed jobs
    return dead_id


@pytest.fixture
def queues_for() -> Iterator[Callable[..., list[Queue]]]:
    opened: list[Queue] = []

    def make(*paths: Path) -> list[Queue]:
        qs = open_queues([str(p) for p in paths])
        opened.extend(qs)
        return qs

    yield make
    for q in opened:
        q.close()


def client_for(queues: list[Queue], **settings: Any) -> TestClient:
    """A TestClient of the app; broker calls may take 30 s (a loaded test machine), unless
    the test sets ``call_timeout`` (tests/brokerq/web/test_bounded.py)."""
    settings.setdefault("call_timeout", 30.0)
    app = create_app(queues, WebSettings(**settings), sample=False)
    return TestClient(app, base_url=BASE_URL, follow_redirects=False)
