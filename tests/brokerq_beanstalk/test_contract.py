"""The shared Producer / Delay contracts, run against three beanstalkd nodes + Redis."""

from __future__ import annotations

import pytest

from tests.contract import DelayContract, ProducerContract

pytestmark = pytest.mark.integration


class TestBeanstalkProducer(ProducerContract):
    pass


class TestBeanstalkDelay(DelayContract):
    pass
