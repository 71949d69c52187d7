"""kq job control on the real Kafka: pause / resume through the compacted control topic
(across a worker restart), job lookup of dead letters, job_id refused with its reason."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokerq.cli_common import EXIT_UNSUPPORTED
from brokerq.errors import NotSupported
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.worker import Worker
from brokerq_kafka import KafkaBroker
from brokerq_kafka.control import PauseWatch, write_flag
from tests.brokerq.test_cli import bq
from tests.contract import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def kq(broker: KafkaBroker) -> KafkaBroker:
    return broker  # tests.services.kafka_topic deletes the control topic too


class Starts:
    """Handler that records when each message started (unix seconds), thread-safely."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep
        self.lock = threading.Lock()
        self.started: list[tuple[float, bytes]] = []

    def __call__(self, msg: Message) -> None:
        with self.lock:
            self.started.append((time.time(), msg.value))
        if self.sleep:
            time.sleep(self.sleep)

    def count(self) -> int:
        with self.lock:
            return len(self.started)


def run(worker: Worker, handler: Callable[..., Any]) -> threading.Thread:
    thread = threading.Thread(target=worker.consume, args=(handler,), daemon=True)
    thread.start()
    return thread


def stays(condition: Callable[[], bool], seconds: float) -> bool:
    """True when ``condition`` held at every look for ``seconds`` (absence takes time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return condition()


def test_push_with_job_id_says_why_kafka_cannot(kq: KafkaBroker) -> None:
    with kq.producer() as producer:
        for options in ({"job_id": "order-42"}, {"unique_for": 60.0}):
            with pytest.raises(NotSupported, match=r"append-only log.*duplicate"):
                producer.push(b"x", **options)


def test_pause_stops_three_busy_threads_survives_a_restart_and_resume_runs_all(
    kq: KafkaBroker, make_conf: Any
) -> None:
    n = 10_000
    with kq.producer() as producer:
        for i in range(n):
            producer.push(str(i), key=str(i))
        producer.flush(30)
    starts = Starts(sleep=0.001)
    first = KafkaBroker(make_conf())
    worker = Worker(first.source, concurrency=3, paused=first.is_paused)
    thread = run(worker, starts)
    assert wait_for(lambda: starts.count() >= 1000, 60), "the worker did not start"

    control = KafkaBroker(make_conf())  # another process's view (brokerq pause CONFIG)
    control.pause()
    paused_at = time.time()
    assert wait_for(lambda: worker.paused, 5), "the worker did not see the pause"
    settled = starts.count()
    assert stays(lambda: starts.count() == settled, 2.0), "a job started while paused"
    last = max(t for t, _ in starts.started)
    print(f"kq pause: last start {last - paused_at:+.3f}s after pause() returned")
    late = [t for t, _ in starts.started if t > paused_at + 1.0]
    assert not late, f"{len(late)} job(s) started more than 1 s after the pause"
    assert settled < n
    assert control.stats()["paused"] == 1

    worker.stop()  # a restart while paused: the new member must take nothing
    thread.join(60)
    first.close()
    second = KafkaBroker(make_conf())
    worker = Worker(second.source, concurrency=3, paused=second.is_paused)
    thread = run(worker, starts)
    assert wait_for(lambda: worker.paused, 10), "the restarted worker did not read the flag"
    assert stays(lambda: starts.count() == settled, 3.0), "a restarted worker ran a paused job"

    control.resume()
    assert control.stats()["paused"] == 0
    assert wait_for(lambda: len({v for _, v in starts.started}) == n, 120), starts.count()
    worker.stop()
    thread.join(60)
    second.close()
    control.close()
    values = [v for _, v in starts.started]
    assert sorted(values) == sorted(str(i).encode() for i in range(n)), "lost or ran twice"


def test_a_paused_member_stops_fetching(kq: KafkaBroker) -> None:
    kq.pause()
    assert kq.is_paused()
    with kq.producer() as producer:
        for i in range(50):
            producer.push(str(i), key=str(i))
        producer.flush(30)
    with kq.source() as source:
        assert wait_for(lambda: source.receive(0.2) is None and bool(source.assignment()), 60)
        assert stays(lambda: len(source.dispatcher) == 0, 1.0), "fetched while paused"
        kq.resume()
        assert not kq.is_paused()
        assert wait_for(lambda: source.receive(0.2) is not None, 30), "nothing after resume"


def test_job_finds_a_dead_letter_and_refuses_other_ids(kq: KafkaBroker, tmp_path: Path) -> None:
    ids: list[str] = []

    def fail(msg: Message) -> None:
        ids.append(msg.id)
        raise ValueError("no such order")

    with kq.producer() as producer:
        producer.push(b"order-7")
        producer.flush(30)
    worker = Worker(kq.source, retry=RetryPolicy(max_attempts=1))
    thread = run(worker, fail)
    assert wait_for(lambda: len(kq.dead_letters()) == 1, 60)
    worker.stop()
    thread.join(60)
    job = kq.job(ids[0])
    assert (job.id, job.state, job.attempt) == (ids[0], "dead", 1)
    assert job.last_error is not None and "no such order" in job.last_error
    assert job.finished_at is not None and abs(job.finished_at - time.time()) < 300
    assert job.message is not None and job.message.value == b"order-7"
    assert job.details["ref"] == kq.dead_letters()[0].ref
    assert kq.job(job.details["ref"]).state == "dead"
    with pytest.raises(NotSupported, match="only dead letters can be looked up"):
        kq.job("never-seen")

    config = tmp_path / "kq.yaml"  # the same through the CLI, and pause / resume
    conf = kq.conf
    config.write_text(
        "name: kq-jobs\n"
        f"kq: {{brokers: {list(conf.brokers)}, topic: {conf.topic}, group: {conf.group}}}\n"
        "handler: tests.brokerq_kafka.rate_handler:record\n"
    )
    env = dict(os.environ)
    shown = json.loads(bq("job", str(config), ids[0], "--json", env=env).stdout)
    assert (shown["state"], shown["attempt"]) == ("dead", 1)
    assert "no such order" in shown["last_error"]
    refused = bq("job", str(config), "never-seen", env=env, check=False)
    assert refused.returncode == EXIT_UNSUPPORTED
    assert "only dead letters can be looked up" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bq("pause", str(config), env=env)
    assert json.loads(bq("stats", str(config), "--json", env=env).stdout)["paused"] == 1
    bq("resume", str(config), env=env)
    assert json.loads(bq("stats", str(config), "--json", env=env).stdout)["paused"] == 0


def test_a_watch_logs_changes_after_start_not_the_history(
    kq: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # `brokerq web` once replayed the control topic at start-up as "group ... paused/resumed"
    for flag in (True, False, True):
        write_flag(kq.conf, flag)
    caplog.set_level(logging.INFO, logger="brokerq_kafka.control")
    watch = PauseWatch(kq.conf)
    try:
        assert watch.paused()  # read to its end: the newest flag of the history
        assert watch.wait_past(write_flag(kq.conf, False), 30)
        assert not watch.current
    finally:
        watch.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "brokerq_kafka.control"]
    assert lines == [f"kafka group {kq.conf.group} resumed"]
