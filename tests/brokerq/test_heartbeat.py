"""Worker heartbeats on the embedded brokers, and the one ``brokerq run`` writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.heartbeat import Heartbeat, queue_of
from tests.brokerq.web.cdp import wait_for


def memory(tmp_path: Path) -> Broker:
    return MemoryBroker()


def sqlite(tmp_path: Path) -> Broker:
    return SqliteBroker.from_config({"path": str(tmp_path / "hb.db"), "queue": "q1"})


@pytest.mark.parametrize("make", [memory, sqlite])
def test_a_beat_lists_the_worker_until_its_ttl_runs_out(
    make: Callable[[Path], Broker], tmp_path: Path
) -> None:
    with make(tmp_path) as broker:
        assert broker.workers() == []
        beat = Heartbeat(
            broker, name="w1", queue="q1", concurrency=4, in_flight=lambda: 2, every=0.2, ttl=3
        )
        with beat:
            wait_for(lambda: beat.beats >= 2, 10, "two beats")
            (info,) = broker.workers()
            assert (info.name, info.pid, info.concurrency, info.in_flight) == (
                "w1",
                os.getpid(),
                4,
                2,
            )
            assert info.host and info.queue == "q1"
            assert time.time() - info.last_beat < 5 and info.started <= info.last_beat
        wait_for(lambda: broker.workers() == [], 30, "the entry to expire")


def test_sqlite_heartbeats_are_per_queue_and_shared_by_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "hb.db")
    with (
        SqliteBroker.from_config({"path": path, "queue": "a"}) as a,
        SqliteBroker.from_config({"path": path, "queue": "b"}) as b,
    ):
        Heartbeat(a, name="wa", queue="a", concurrency=1).beat()
        assert [w.name for w in a.workers()] == ["wa"]
        assert b.workers() == []


def test_a_broker_without_heartbeats_ends_the_thread_quietly() -> None:
    class NoBeats(MemoryBroker):
        def heartbeat(self, info, ttl):
            from brokerq.errors import NotSupported

            raise NotSupported("no")

    with NoBeats() as broker:
        beat = Heartbeat(broker, name="w", queue="q", concurrency=1, every=0.05)
        beat.start()
        wait_for(lambda: beat._thread is not None and not beat._thread.is_alive(), 10, "the end")
        beat.stop()


def test_queue_of_each_section() -> None:
    from brokerq_beanstalk import DqConf
    from brokerq_kafka import KqConf

    assert queue_of(KqConf(brokers=["h:1"], topic="orders", group="g")) == "orders"
    assert queue_of(DqConf(beanstalks=[{"endpoint": "h:1", "tube": "t"}])) == "t"


def test_brokerq_run_writes_a_heartbeat(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    cfg = tmp_path / "w.yaml"
    cfg.write_text(
        f"name: beating\nhandler: tests.brokerq.test_heartbeat:noop\nconcurrency: 3\n"
        f"embedded: {{path: {db}, queue: jobs}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "brokerq", "run", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        with SqliteBroker.from_config({"path": str(db), "queue": "jobs"}) as broker:

            def listed() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "")
                return any(w.pid == proc.pid for w in broker.workers())

            wait_for(listed, 60, "brokerq run's heartbeat")
            (info,) = broker.workers()
            assert (info.name, info.concurrency, info.queue) == ("beating", 3, "jobs")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0


def noop(value: bytes) -> None:
    """The handler of the run test."""
