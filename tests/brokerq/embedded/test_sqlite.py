"""SqliteBroker specifics: leases, heartbeat, stats and dead-letter admin, config, errors."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from brokerq.broker import Delivery
from brokerq.embedded import EmbeddedConf, SqliteBroker, _sqlite_db
from brokerq.embedded._sqlite_source import SqliteSource
from brokerq.errors import ConfigError, ConnectionFailed
from brokerq.outcome import Failure
from tests.brokerq.embedded.conftest import counts


def _receive(
    broker: SqliteBroker, source: SqliteSource | None = None, timeout: float = 5.0
) -> tuple[SqliteSource, Delivery[Any]]:
    """Receive one delivery (from a new source unless one is given); fail if none comes."""
    src = source or broker.source()
    delivery = src.receive(timeout)
    assert delivery is not None
    return src, delivery


def test_push_survives_reopening_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    with SqliteBroker({"path": path}) as broker, broker.producer() as producer:
        producer.push(b"one", key="k", headers={"h": "v"})
        ids = producer.push_many([b"two", "three"])
    with SqliteBroker({"path": path}) as broker, broker.source() as source:
        got = [source.receive(1) for _ in range(3)]
        assert [d.message.value for d in got if d] == [b"one", b"two", b"three"]
        first = got[0]
        assert first is not None
        assert (first.message.key, dict(first.message.headers)) == (b"k", {"h": "v"})
        assert [d.message.id for d in got[1:] if d] == ids
        assert first.message.not_before is None
        for d in got:
            assert d is not None
            source.ack(d)
        assert counts(broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_wal_mode_and_queues_are_separate(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    a = SqliteBroker({"path": path, "queue": "a"})
    b = SqliteBroker({"path": path, "queue": "b"})
    a.producer().push(b"for a")
    with b.source() as source:
        assert source.receive(0.1) is None
    assert a.stats()["pending"] == 1 and b.stats()["pending"] == 0
    conn = _sqlite_db.connect(path, "normal")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    a.close()
    b.close()


def test_expired_lease_is_claimed_again_with_the_next_attempt(tmp_path: Path) -> None:
    broker = SqliteBroker({"path": str(tmp_path / "j.db"), "visibility_timeout": "300ms"})
    broker.producer().push(b"x")
    dead_source, first = _receive(broker)
    dead_source._stop.set()  # simulate a hung or dead worker: no more heartbeats
    other = broker.source()
    assert other.receive(0.1) is None  # lease still live
    second = other.receive(5)
    assert second is not None and second.message.id == first.message.id
    assert second.message.attempt == 2
    dead_source.ack(first)  # the old owner's ack must not delete the new owner's job
    assert broker.stats()["in_flight"] == 1
    other.ack(second)
    assert broker.stats()["in_flight"] == 0
    broker.close()


def test_heartbeat_keeps_a_long_job_leased(tmp_path: Path) -> None:
    broker = SqliteBroker({"path": str(tmp_path / "j.db"), "visibility_timeout": "600ms"})
    broker.producer().push(b"long")
    source, delivery = _receive(broker)
    other = broker.source()
    assert other.receive(2.0) is None  # over three lease lengths: renewed all along
    source.ack(delivery)
    assert counts(broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    broker.close()


def test_lease_is_never_renewed_past_the_delivery_deadline(tmp_path: Path) -> None:
    """A handler past its time limit + grace (deadline) loses its job to other workers."""
    broker = SqliteBroker({"path": str(tmp_path / "j.db"), "visibility_timeout": "300ms"})
    broker.producer().push(b"stuck")
    _holder, delivery = _receive(broker)
    delivery.deadline = time.time() + 1.0  # what the Worker sets: limit + grace
    other = broker.source()
    assert other.receive(0.6) is None  # renewed until the deadline
    again = other.receive(10)  # without the deadline: renewed forever
    assert again is not None and again.message.id == delivery.message.id
    assert time.time() >= delivery.deadline  # never before it
    assert again.message.attempt == 2
    other.ack(again)
    broker.close()


def test_read_only_operations_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    broker = SqliteBroker({"path": str(path)})
    assert counts(broker.stats()) == {"pending": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    assert broker.dead_letters() == []
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="does not exist"):
        SqliteBroker({"path": str(tmp_path / "no" / "x.db")}).stats()
    broker.producer().push(b"x")
    broker.close()
    before = path.read_bytes()
    with SqliteBroker({"path": str(path)}) as reader:
        assert reader.stats()["pending"] == 1
        assert reader.dead_letters() == []
    assert path.read_bytes() == before


def test_stats_dead_letters_retry_dead_purge(sqlite_broker: SqliteBroker) -> None:
    sqlite_broker.producer().push_many([b"a", b"b"])
    sqlite_broker.delay_producer().delay(b"later", 60)
    assert counts(sqlite_broker.stats()) == {"pending": 2, "delayed": 1, "in_flight": 0, "dead": 0}
    source, one = _receive(sqlite_broker)
    _, two = _receive(sqlite_broker, source)
    assert sqlite_broker.stats()["in_flight"] == 2
    source.dead(one, Failure.parse("ValueError: a"))
    source.dead(two, Failure.parse("ValueError: b"))
    letters = sqlite_broker.dead_letters()
    assert [(d.message.value, d.error) for d in letters] == [
        (b"a", "ValueError: a"),
        (b"b", "ValueError: b"),
    ]
    assert all(d.failed_at and d.ref == d.message.id for d in letters)
    assert sqlite_broker.retry_dead([letters[0].ref, "no-such-id"]) == 1
    _, again = _receive(sqlite_broker, source)
    assert (again.message.value, again.message.attempt) == (b"a", 1)
    source.retry(again, 30, Failure.parse("later"))
    assert counts(sqlite_broker.stats()) == {"pending": 0, "delayed": 2, "in_flight": 0, "dead": 1}
    assert sqlite_broker.retry_dead() == 1
    assert sqlite_broker.purge_dead() == 0
    _, b = _receive(sqlite_broker, source)
    source.dead(b, Failure.parse("x"))
    assert sqlite_broker.purge_dead() == 1
    source.close()


def test_revoke_only_waiting_jobs(sqlite_broker: SqliteBroker) -> None:
    delayed = sqlite_broker.delay_producer()
    job = delayed.delay(b"x", 0)
    source, delivery = _receive(sqlite_broker)
    assert delayed.revoke(job) is False  # running: too late
    source.release(delivery)
    assert delayed.revoke(job) is True
    assert delayed.revoke(job) is False


def test_compat_claim_without_returning(
    sqlite_broker: SqliteBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_db, "HAS_RETURNING", False)
    sqlite_broker.producer().push(b"old sqlite")
    source, delivery = _receive(sqlite_broker)
    assert delivery.message.value == b"old sqlite"
    assert source.receive(0.05) is None
    source.ack(delivery)


def test_push_wakes_an_idle_receive_at_once(tmp_path: Path) -> None:
    broker = SqliteBroker({"path": str(tmp_path / "j.db"), "poll_interval": "5s"})
    source = broker.source()
    source.receive(0.01)
    threading.Timer(0.2, lambda: broker.producer().push(b"now")).start()
    start = time.monotonic()
    assert source.receive(10) is not None
    assert time.monotonic() - start < 2.0
    broker.close()


def test_check_names_the_path(tmp_path: Path) -> None:
    SqliteBroker({"path": str(tmp_path / "ok.db")}).check()
    assert (tmp_path / "ok.db").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        SqliteBroker({"path": str(tmp_path / "nope" / "x.db")}).check()
    with pytest.raises(ConfigError, match="is a directory"):
        SqliteBroker({"path": str(tmp_path)}).check()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConnectionFailed, match=r"garbage\.db"):
        SqliteBroker({"path": str(garbage)}).check()
    with pytest.raises(ConfigError, match="memory"):
        SqliteBroker({"path": ":memory:"})


def test_config_accepts_the_yaml_section() -> None:
    conf = EmbeddedConf.model_validate(
        {
            "path": "./brokerq.db",
            "queue": "default",
            "visibility_timeout": "30s",
            "backend": "sqlite",
        }
    )
    assert conf.visibility_timeout == 30.0 and conf.poll_interval == 0.05
    assert SqliteBroker.config_model is EmbeddedConf
    with pytest.raises(ValueError, match="extra"):
        EmbeddedConf.model_validate({"pathh": "x"})
    with pytest.raises(ValueError, match="visibility_timeout"):
        EmbeddedConf.model_validate({"visibility_timeout": "10ms"})


def test_closed_producer_raises_a_core_error(sqlite_broker: SqliteBroker) -> None:
    from brokerq.errors import DeliveryError

    producer = sqlite_broker.producer()
    producer.close()
    with pytest.raises(DeliveryError, match="closed"):
        producer.push(b"x")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_connection(sqlite_broker: SqliteBroker) -> None:
    sqlite_broker.check()  # the parent's admin connection is open
    sqlite_broker.stats()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        try:
            sqlite_broker.producer().push(b"from child")
            code = 0 if sqlite_broker.stats()["pending"] == 1 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sqlite_broker.stats()["pending"] == 1
