"""The shared Producer / Delay contracts, run against three beanstalkd nodes + Redis."""

from __future__ import annotations

import pytest

from brokerq.broker import Broker
from brokerq.testing.contract import DelayContract, FateContract, ProducerContract

pytestmark = pytest.mark.integration


class TestBeanstalkProducer(ProducerContract, FateContract):
    # serial: which copy reaches the waiting thread first is a race between three node
    # threads; on a CPU shared with other tests the less urgent one can win it
    @pytest.mark.serial
    def test_priority_lower_runs_first_also_after_a_retry(self, broker: Broker) -> None:
        super().test_priority_lower_runs_first_also_after_a_retry(broker)


class TestBeanstalkDelay(DelayContract):
    pass
