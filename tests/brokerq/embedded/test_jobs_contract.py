"""The job-control contract (brokerq.testing.jobs_contract) on the memory and sqlite brokers."""

from __future__ import annotations

import pytest

from brokerq.broker import Broker
from brokerq.embedded import MemoryBroker, SqliteBroker
from brokerq.testing.jobs_contract import JobsContract


class TestMemoryJobs(JobsContract):
    @pytest.fixture
    def broker(self, memory_broker: MemoryBroker) -> Broker:
        return memory_broker


class TestSqliteJobs(JobsContract):
    @pytest.fixture
    def broker(self, sqlite_broker: SqliteBroker) -> Broker:
        return sqlite_broker
