"""SqliteBroker priorities (lower first, kept across retry / release / redrive), the schema
migration of files written by an older brokerq, and dead letters with type and traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from brokerq.embedded import SqliteBroker, _sqlite_db
from brokerq.errors import ConfigError
from brokerq.message import Message
from brokerq.outcome import Failure
from brokerq.retry import RetryPolicy
from tests.brokerq.embedded.conftest import counts
from tests.contract import running, wait_for

OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, value BLOB NOT NULL, key BLOB, headers TEXT,
    attempt INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, not_before REAL NOT NULL,
    lease_until REAL, owner TEXT, state TEXT NOT NULL DEFAULT 'ready', error TEXT,
    failed_at REAL
);
CREATE INDEX jobs_due ON jobs (queue, state, not_before, id);
"""


def _values(source: object, n: int) -> list[bytes]:
    got = [source.receive(2) for _ in range(n)]  # type: ignore[attr-defined]
    return [d.message.value for d in got if d is not None]


def test_priority_0_runs_before_100_also_after_a_retry(sqlite_broker: SqliteBroker) -> None:
    """Pushed in reverse order, through a real Worker: 0 runs first, and its retry does too."""
    with sqlite_broker.producer() as producer:
        producer.push(b"p100", priority=100)
        producer.push(b"p0", priority=0)
    order: list[tuple[bytes, int]] = []

    def handler(msg: Message) -> None:
        order.append((msg.value, msg.attempt))
        if msg.value == b"p0" and msg.attempt == 1:
            raise RuntimeError("first attempt fails")

    # one thread and no backoff: p0's retry is due at once and must beat p100 again
    policy = RetryPolicy(max_attempts=3, backoff=0.0, jitter=False)
    with running(sqlite_broker, handler, concurrency=1, prefetch=1, retry=policy):
        assert wait_for(lambda: len(order) == 3, 15)
    assert order == [(b"p0", 1), (b"p0", 2), (b"p100", 1)]


def test_priority_kept_across_release_delay_and_redrive(sqlite_broker: SqliteBroker) -> None:
    sqlite_broker.delay_producer().delay(b"d7", 0.01, priority=7)
    with sqlite_broker.producer() as producer:
        producer.push(b"default")  # the section's priority: 2
        producer.push_many([b"m1", b"m1b"], priority=1)
        producer.push(b"top", priority=0)
    assert wait_for(lambda: sqlite_broker.stats()["pending"] == 5, 5)
    order = [b"top", b"m1", b"m1b", b"default", b"d7"]
    with sqlite_broker.source() as source:
        deliveries = [d for d in (source.receive(1) for _ in range(5)) if d is not None]
        assert [d.message.value for d in deliveries] == order
        by_value = {d.message.value: d for d in deliveries}
        for v in (b"d7", b"top"):
            source.release(by_value[v])
        for v in (b"m1", b"m1b", b"default"):
            source.dead(by_value[v], Failure("ValueError", v.decode()))
        assert sqlite_broker.retry_dead() == 3
        assert _values(source, 5) == order


def test_priority_range_is_beanstalkds(sqlite_broker: SqliteBroker) -> None:
    for bad in (-1, 2**32, 2.5):
        with pytest.raises(ValueError, match="priority"):
            sqlite_broker.producer().push(b"x", priority=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority"):
            sqlite_broker.delay_producer().delay(b"x", 1, priority=bad)  # type: ignore[arg-type]
    sqlite_broker.producer().push(b"max", priority=2**32 - 1)
    assert SqliteBroker.capabilities.priority and SqliteBroker.capabilities.counts_redeliveries


def test_a_file_from_an_older_brokerq_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.execute(
        "INSERT INTO jobs (id, queue, value, created_at, not_before) VALUES ('old1', 'default', "
        "x'6f6c64', 1.0, 1.0)"
    )
    conn.execute(
        "INSERT INTO jobs (id, queue, value, created_at, not_before, state, error, failed_at) "
        "VALUES ('gone', 'default', x'78', 1.0, 1.0, 'dead', 'KeyError: ''k''', 2.0)"
    )
    conn.commit()
    conn.close()
    broker = SqliteBroker({"path": path})
    with pytest.raises(ConfigError, match="older brokerq"):
        broker.stats()  # read-only: does not upgrade the file
    broker.check()  # read-write: upgrades it
    assert counts(broker.stats()) == {"pending": 1, "delayed": 0, "in_flight": 0, "dead": 1}
    (letter,) = broker.dead_letters()
    assert isinstance(letter.error, Failure)
    assert (letter.error, letter.error.type, letter.traceback) == ("KeyError: 'k'", "KeyError", "")
    broker.producer().push(b"urgent", priority=0)
    with broker.source() as source:
        assert _values(source, 2) == [b"urgent", b"old"]
    broker.close()


def test_dead_letters_keep_type_and_traceback(sqlite_broker: SqliteBroker) -> None:
    def handler(msg: Message) -> None:
        empty: dict[str, int] = {}
        empty["missing"]

    sqlite_broker.producer().push_many([b"a", b"b"])
    with running(sqlite_broker, handler, retry=RetryPolicy(max_attempts=1)):
        assert wait_for(lambda: len(sqlite_broker.dead_letters()) == 2, 15)
    first, second = sqlite_broker.dead_letters()
    assert isinstance(first.error, Failure)
    assert first.error == "KeyError: 'missing'" and first.error.type == "KeyError"
    assert "Traceback (most recent call last)" in first.traceback
    assert 'in handler\n    empty["missing"]' in first.traceback
    only = sqlite_broker.dead_letters(refs=[second.ref])
    assert [d.ref for d in only] == [second.ref]
    assert len(sqlite_broker.dead_letters(limit=1)) == 1
    assert sqlite_broker.purge_dead([second.ref]) == 1
    assert [d.ref for d in sqlite_broker.dead_letters()] == [first.ref]


def test_the_claim_walks_the_priority_index_without_sorting(sqlite_broker: SqliteBroker) -> None:
    """A sort of every due row per claim made claims O(backlog): the plan must not sort."""
    sqlite_broker.check()
    with sqlite_broker._admin.use("plan") as conn:
        plan = [
            r[-1]
            for r in conn.execute("EXPLAIN QUERY PLAN " + _sqlite_db.NEXT, {"queue": "q", "now": 0})
        ]
    assert any("jobs_next" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
