"""Fixtures for the embedded brokers: a fresh memory broker, or a sqlite file under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerq.embedded import MemoryBroker, SqliteBroker


@pytest.fixture
def memory_broker() -> Iterator[MemoryBroker]:
    broker = MemoryBroker()
    yield broker
    broker.close()


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> Iterator[SqliteBroker]:
    broker = SqliteBroker({"path": str(tmp_path / "jobs.db"), "visibility_timeout": "5s"})
    yield broker
    broker.close()


def counts(stats: dict[str, int]) -> dict[str, int]:
    """``stats()`` without its age (``oldest_age_seconds`` depends on the clock)."""
    return {k: v for k, v in stats.items() if k != "oldest_age_seconds"}
