"""WorkerMetrics: the per-message middleware and what it exports."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from brokerq.embedded.memory import MemoryBroker
from brokerq.message import Message
from brokerq.metrics.recorder import LATENESS_BUCKETS, WorkerMetrics, is_redelivery
from brokerq.retry import RetryPolicy
from tests.brokerq.metrics.helpers import by_label, ok_or_fail, parse, value
from tests.contract import running, wait_for


def scrape(m: WorkerMetrics) -> dict[str, Metric]:
    registry = CollectorRegistry()
    registry.register(m)
    return parse(generate_latest(registry).decode())


def handle(m: WorkerMetrics, msg: Message, outcome: str = "ok") -> None:
    m.before_process(msg)
    m.after_process(msg, outcome, None)


def test_nothing_handled_exports_families_without_samples() -> None:
    families = scrape(WorkerMetrics("w", "q"))
    assert "brokerq_messages_processed" in families
    assert value(families, "brokerq_messages_processed_total", outcome="ok") is None


def test_real_worker_5_ok_and_1_exhausting_its_retries() -> None:
    metrics = WorkerMetrics("orders", "q")
    broker = MemoryBroker.from_config({"backend": "memory"})
    with broker.producer() as p:
        for i in range(5):
            p.push(f"ok{i}")
        p.push("fail")
    policy = RetryPolicy(max_attempts=2, backoff=0.05, jitter=False)
    with running(broker, ok_or_fail, retry=policy, middleware=[metrics], concurrency=2):
        assert wait_for(lambda: metrics.totals()["ok"] == 5 and metrics.totals()["dead"] == 1)
    families = scrape(metrics)
    processed = by_label(families, "brokerq_messages_processed_total", "outcome")
    assert processed == {"ok": 5.0, "retry": 1.0, "dead": 1.0}
    labels = {"worker": "orders", "queue": "q"}
    assert value(families, "brokerq_handler_duration_seconds_count", **labels) == 7
    assert value(families, "brokerq_message_age_seconds_count", **labels) == 7
    # the retry carried its backoff as not_before: one lateness observation, not early
    assert value(families, "brokerq_delayed_lateness_seconds_count", **labels) == 1
    assert value(families, "brokerq_delayed_early_total", **labels) == 0
    assert value(families, "brokerq_messages_in_flight", **labels) == 0
    assert value(families, "brokerq_redeliveries_total", **labels) == 0


def test_age_lateness_and_early() -> None:
    m = WorkerMetrics("w", "q")
    now = time.time()
    handle(m, Message(b"old", created_at=now - 100.0))
    handle(m, Message(b"late", created_at=now - 10.0, not_before=now - 0.2))
    handle(m, Message(b"early", created_at=now, not_before=now + 60.0))
    f = scrape(m)
    age_sum = value(f, "brokerq_message_age_seconds_sum")
    assert age_sum is not None and 110.0 <= age_sum < 111.0
    assert value(f, "brokerq_message_age_seconds_bucket", le="60.0") == 2
    assert value(f, "brokerq_message_age_seconds_bucket", le="300.0") == 3
    assert value(f, "brokerq_delayed_lateness_seconds_count") == 2
    assert value(f, "brokerq_delayed_early_total") == 1
    # the early one lands in the lowest bucket; the late one (0.2 s) in le=0.25
    assert value(f, "brokerq_delayed_lateness_seconds_bucket", le=repr(LATENESS_BUCKETS[0])) == 1
    assert value(f, "brokerq_delayed_lateness_seconds_bucket", le="0.25") == 2


def test_redelivery_is_an_attempt_without_backoff_not_retried_here() -> None:
    assert not is_redelivery(Message(b"x"))
    assert is_redelivery(Message(b"x", attempt=2))
    assert not is_redelivery(Message(b"x", attempt=2, not_before=time.time()))
    assert not is_redelivery(Message(b"x", id="k", attempt=2), retried_here={"k"})
    m = WorkerMetrics("w", "q")
    handle(m, Message(b"a", attempt=3))  # lease expired twice: the broker handed it out again
    handle(m, Message(b"b", attempt=2, not_before=time.time()))  # a retry with its backoff
    first = Message(b"c", id="kafka-1")
    handle(m, first, "retry")  # Kafka retries in-process: same id, attempt + 1, no not_before
    handle(m, first.next_attempt())
    assert value(scrape(m), "brokerq_redeliveries_total") == 1


def test_in_flight_and_busy() -> None:
    m = WorkerMetrics("w", "q")
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        msg = Message(b"x")
        m.before_process(msg)
        started.set()
        release.wait(10)
        m.after_process(msg, "ok", None)

    t = threading.Thread(target=work, name="brokerq-worker-7")
    t.start()
    try:
        assert started.wait(10)
        assert value(scrape(m), "brokerq_messages_in_flight") == 1
        busy = m.busy()
        assert [(b.thread, b.in_flight, b.done) for b in busy] == [("brokerq-worker-7", 1, 0)]
    finally:
        release.set()
        t.join(10)
    assert value(scrape(m), "brokerq_messages_in_flight") == 0
    assert m.busy() == []


def test_threads_never_lose_counts() -> None:
    m = WorkerMetrics("w", "q")
    per_thread, threads = 5000, 4
    msg = Message(b"x")

    def work() -> None:
        for _ in range(per_thread):
            handle(m, msg)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    f = scrape(m)
    assert value(f, "brokerq_messages_processed_total", outcome="ok") == per_thread * threads
    assert value(f, "brokerq_handler_duration_seconds_count") == per_thread * threads
    assert value(f, "brokerq_handler_duration_seconds_bucket", le="+Inf") == per_thread * threads


def test_a_batch_counts_each_message_in_flight_and_timed() -> None:
    m = WorkerMetrics("w", "q")
    batch = [Message(f"b{i}".encode()) for i in range(3)]
    for msg in batch:  # what Worker.process_batch does: all befores, one call, all afters
        m.before_process(msg)
    assert value(scrape(m), "brokerq_messages_in_flight") == 3
    assert [b.in_flight for b in m.busy()] == [3]  # one thread, three messages
    for msg in batch:
        m.after_process(msg, "ok", None)
    f = scrape(m)
    assert value(f, "brokerq_messages_in_flight") == 0
    assert value(f, "brokerq_handler_duration_seconds_count") == 3
    assert value(f, "brokerq_messages_processed_total", outcome="ok") == 3


def test_after_without_before_counts_the_outcome_only() -> None:
    m = WorkerMetrics("w", "q")  # the poison path and the watchdog call after_process alone
    m.after_process(Message(b"x", attempt=9), "dead", None)
    f = scrape(m)
    assert value(f, "brokerq_messages_processed_total", outcome="dead") == 1
    assert value(f, "brokerq_handler_duration_seconds_count") == 0
    assert value(f, "brokerq_messages_in_flight") == 0


def test_sampling_times_one_in_n_and_keeps_counters_and_lateness_exact() -> None:
    m = WorkerMetrics("w", "q", sample=4)
    now = time.time()
    for i in range(12):
        handle(m, Message(f"m{i}".encode(), not_before=now - 0.01 if i % 3 == 0 else None))
    handle(m, Message(b"early", not_before=now + 60.0))
    handle(m, Message(b"crash", attempt=2))
    f = scrape(m)
    assert value(f, "brokerq_messages_processed_total", outcome="ok") == 14
    assert value(f, "brokerq_handler_duration_seconds_count") == 4  # messages 0, 4, 8, 12
    assert value(f, "brokerq_message_age_seconds_count") == 4
    assert value(f, "brokerq_delayed_lateness_seconds_count") == 5  # every delayed job
    assert value(f, "brokerq_delayed_early_total") == 1
    assert value(f, "brokerq_redeliveries_total") == 1
    assert value(f, "brokerq_messages_in_flight") == 0
