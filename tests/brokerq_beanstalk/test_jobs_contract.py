"""The job-control contract (brokerq.testing.jobs_contract) on dq: beanstalkd x3 + Redis."""

from __future__ import annotations

import pytest

from brokerq.broker import Broker
from brokerq.testing.jobs_contract import JobsContract
from brokerq_beanstalk import BeanstalkBroker

pytestmark = pytest.mark.integration


class TestBeanstalkJobs(JobsContract):
    @pytest.fixture
    def broker(self, broker: BeanstalkBroker) -> Broker:  # the dq conftest's broker
        return broker
