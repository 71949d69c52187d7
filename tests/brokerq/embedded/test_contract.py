"""The shared Producer / Delay contracts, run against the memory and sqlite brokers."""

from __future__ import annotations

import pytest

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.testing.contract import DelayContract, FateContract, ProducerContract


class TestMemoryContract(ProducerContract, DelayContract, FateContract):
    @pytest.fixture
    def broker(self, memory_broker: MemoryBroker) -> Broker:
        return memory_broker


class TestSqliteContract(ProducerContract, DelayContract, FateContract):
    @pytest.fixture
    def broker(self, sqlite_broker: SqliteBroker) -> Broker:
        return sqlite_broker
