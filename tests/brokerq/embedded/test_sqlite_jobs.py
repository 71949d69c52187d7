"""Job control in the sqlite file: keep_done, forgetting finished rows, a dead letter whose id
is used again, read-only lookups, and the rate limiter shared through the file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from brokerq.config import loads
from brokerq.embedded import SqliteBroker
from brokerq.embedded._sqlite_source import SqliteSource
from brokerq.errors import DuplicateJob
from brokerq.outcome import Failure
from brokerq.ratelimit import Rate
from tests.brokerq.embedded.conftest import counts
from tests.contract import wait_for


def _settle_one(broker: SqliteBroker, how: str) -> str:
    with broker.source() as source:
        delivery = source.receive(5)
        assert delivery is not None
        if how == "ack":
            source.ack(delivery)
        else:
            source.dead(delivery, Failure("KeyError", "gone"))
    return delivery.message.id


def test_keep_done_zero_forgets_at_once_but_unique_for_still_holds(tmp_path: Path) -> None:
    broker = SqliteBroker({"path": str(tmp_path / "q.db"), "keep_done": 0})
    with broker, broker.producer() as producer:
        producer.push(b"plain", job_id="a")
        assert _settle_one(broker, "ack") == "a"
        assert broker.job("a") is None
        producer.push(b"reserved", job_id="b", unique_for=60)
        _settle_one(broker, "ack")
        info = broker.job("b")
        assert info is not None and info.state == "done"
        with pytest.raises(DuplicateJob) as raised:
            producer.push(b"again", job_id="b")
        assert (raised.value.job_id, raised.value.state) == ("b", "done")
        producer.push(b"free", job_id="a")


def test_finished_rows_are_purged_after_keep_done(tmp_path: Path) -> None:
    broker = SqliteBroker({"path": str(tmp_path / "q.db"), "keep_done": "200ms"})
    with broker, broker.producer() as producer:
        ids = producer.push_many([b"x"] * 5)
        source = broker.source()
        for _ in ids:
            delivery = source.receive(5)
            assert delivery is not None
            source.ack(delivery)
        assert {getattr(broker.job(i), "state", None) for i in ids} == {"done"}
        assert wait_for(lambda: all(broker.job(i) is None for i in ids), 5)  # forgotten at once
        assert isinstance(source, SqliteSource)
        source._purge(time.time())  # what its heartbeat does every PURGE_EVERY seconds
        with broker._admin.use("count") as conn:
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        assert counts(broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}
        source.close()


def test_a_dead_letter_keeps_its_row_when_its_id_is_used_again(tmp_path: Path) -> None:
    with SqliteBroker({"path": str(tmp_path / "q.db")}) as broker, broker.producer() as producer:
        producer.push(b"first", job_id="order-7", unique_for=0.3)
        _settle_one(broker, "dead")
        with pytest.raises(DuplicateJob, match=r"'order-7' already exists \(dead\)"):
            producer.push(b"too soon", job_id="order-7")
        time.sleep(0.4)
        producer.push(b"second", job_id="order-7")
        info = broker.job("order-7")
        assert info is not None and info.state == "pending"
        (letter,) = broker.dead_letters()
        assert letter.message.value == b"first" and letter.ref.startswith("order-7~")
        assert broker.job(letter.ref) is not None


def test_lookups_and_pause_flag_are_read_only(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    with SqliteBroker({"path": str(path)}) as broker:
        assert broker.job("x") is None
        assert broker.is_paused() is False
    assert not path.exists()


def test_pause_is_seen_by_another_broker_on_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    with SqliteBroker({"path": path}) as one, SqliteBroker({"path": path}) as two:
        one.pause()
        one.pause()  # idempotent
        assert two.is_paused()
        other_queue = SqliteBroker({"path": path, "queue": "other"})
        assert not other_queue.is_paused()
        other_queue.close()
        two.resume()
        assert not one.is_paused()


def test_rate_limiter_counts_across_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    with SqliteBroker({"path": path}) as one, SqliteBroker({"path": path}) as two:
        one.check()
        rate = Rate(5, 3600.0)  # one window for the whole test
        hits = [(one if i % 2 else two).rate_limiter().hit("k", rate) for i in range(7)]
        assert hits[:5] == [0.0] * 5
        assert all(0 < h <= 3600 for h in hits[5:])
        assert one.rate_limiter().hit("other", rate) == 0.0


def test_check_accepts_rate_limit_on_sqlite_and_memory(tmp_path: Path) -> None:
    for section in (f"embedded: {{path: '{tmp_path / 'q.db'}'}}", "embedded: {backend: memory}"):
        cfg = loads(f"{section}\nhandler: os:getcwd\nrate_limit: {{limit: 50/s}}\n")
        broker = cfg.build_broker()
        options = cfg.worker_options(broker)
        assert options["rate_limits"].queue_rate == Rate(50, 1.0)
        assert options["paused"] == broker.is_paused
        broker.close()
