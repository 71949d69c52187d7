"""Exporter: /healthz (stuck handlers, dead threads) and /readyz (broker check, time-bounded)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from brokerq.embedded.config import EmbeddedConf
from brokerq.embedded.memory import MemoryBroker
from brokerq.errors import ConnectionFailed
from brokerq.message import Message
from brokerq.metrics.config import MetricsConf
from brokerq.metrics.exporter import Exporter, queue_label
from brokerq_beanstalk.config import DqConf
from tests.contract import wait_for


@dataclass
class FakeWorker:
    concurrency: int
    stopping: bool = False
    time_limit: float | None = 60.0
    time_limit_grace: float = 5.0


def exporter(broker: MemoryBroker | None = None, **conf: object) -> Exporter:
    return Exporter(
        MetricsConf(listen="0", **conf),
        worker="w",
        queue="q",
        broker=broker or MemoryBroker.from_config({"backend": "memory"}),
    )


def test_stuck_handler_fails_health_until_it_returns() -> None:
    e = exporter(stuck_after=0.05)
    m = e.worker_metrics
    entered, release = threading.Event(), threading.Event()

    def handler_thread() -> None:
        msg = Message(b"x")
        m.before_process(msg)
        entered.set()
        release.wait(30)
        m.after_process(msg, "ok", None)

    t = threading.Thread(target=handler_thread, name="handler-under-test")
    t.start()
    try:
        assert entered.wait(10)
        assert wait_for(lambda: not e.health()[0], 10)
        ok, reason = e.health()
        assert not ok
        assert reason.startswith("stuck: handler-under-test has not finished a message for")
    finally:
        release.set()
        t.join(10)
    assert e.health() == (True, "ok")


def test_stuck_after_defaults_to_the_time_limit_past_its_grace() -> None:
    e = exporter()
    assert e.stuck_after() is None  # no worker watched yet
    e._worker = FakeWorker(concurrency=1, time_limit=60.0, time_limit_grace=5.0)
    assert e.stuck_after() == 95.0
    e._worker = FakeWorker(concurrency=1, time_limit=None)
    assert e.stuck_after() is None
    assert exporter(stuck_after=7).stuck_after() == 7.0


def test_dead_worker_threads_fail_health() -> None:
    e = exporter()
    release = threading.Event()
    t = threading.Thread(target=release.wait, args=(30,), name="brokerq-worker-health-test")
    t.start()
    try:
        e._worker = FakeWorker(concurrency=1000)
        ok, reason = e.health()
        assert not ok and reason.endswith("of 1000 worker threads died")
        e._worker = FakeWorker(concurrency=1000, stopping=True)  # stopping: not a failure
        assert e.health() == (True, "ok")
    finally:
        release.set()
        t.join(10)


class Checked(MemoryBroker):
    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.error: Exception | None = None
        self.gate: threading.Event | None = None

    def check(self) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if self.error is not None:
            raise self.error


def test_ready_follows_broker_check() -> None:
    broker = Checked.from_config({"backend": "memory"})
    assert isinstance(broker, Checked)
    e = exporter(broker, scrape_timeout=0.2)
    assert e.ready() == (True, "ok")
    broker.error = ConnectionFailed("redis://app:pw@10.0.0.9:6379 refused")
    e._ready.ttl = 0.0
    ok, reason = e.ready()
    assert not ok and reason == "broker: redis://app:pw@10.0.0.9:6379 refused"  # redacted on HTTP
    broker.error = None
    broker.gate = threading.Event()
    try:
        assert e.ready() == (False, "broker check did not answer within 0.2s")
    finally:
        broker.gate.set()


def test_queue_label_per_section() -> None:
    dq = DqConf.model_validate(
        {
            "beanstalks": [
                {"endpoint": "127.0.0.1:11300", "tube": "mail"},
                {"endpoint": "127.0.0.1:11301", "tube": "mail"},
            ],
            "redis": {"url": "redis://127.0.0.1:6379/0"},
        }
    )
    assert queue_label(dq) == "mail"
    assert queue_label(EmbeddedConf(queue="x")) == "x"


def test_a_thread_that_keeps_finishing_messages_is_not_stuck() -> None:
    e = exporter(stuck_after=0.05)
    m = e.worker_metrics
    first, second = Message(b"1"), Message(b"2")
    m.before_process(first)
    assert e.health() == (True, "ok")  # first look: busy, the clock starts now
    time.sleep(0.1)
    m.after_process(first, "ok", None)
    m.before_process(second)
    assert e.health() == (True, "ok")  # busy again, but it finished one since the last look
    time.sleep(0.1)
    ok, reason = e.health()  # nothing finished for longer than stuck_after
    assert not ok and "has not finished a message for" in reason
    m.after_process(second, "ok", None)
    assert e.health() == (True, "ok")
