"""The shared Producer / Delay contracts, run against three beanstalkd nodes + Redis."""

from __future__ import annotations

import pytest

from brokerq.testing.contract import DelayContract, FateContract, ProducerContract

pytestmark = pytest.mark.integration


class TestBeanstalkProducer(ProducerContract, FateContract):
    pass


class TestBeanstalkDelay(DelayContract):
    pass
