"""The job-control contract (brokerq.testing.jobs_contract) on kq: job_id refused, lookups
of other ids refused, pause / resume through the control topic."""

from __future__ import annotations

import pytest

from brokerq.broker import Broker
from brokerq.testing.jobs_contract import JobsContract
from brokerq_kafka import KafkaBroker

pytestmark = pytest.mark.integration


class TestKafkaJobs(JobsContract):
    @pytest.fixture
    def broker(self, broker: KafkaBroker) -> Broker:  # the kq conftest's broker
        return broker
