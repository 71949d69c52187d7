"""The shared Producer/Source contract, against a real Kafka broker."""

from __future__ import annotations

import pytest

from brokerq.testing.contract import FateContract, ProducerContract

pytestmark = pytest.mark.integration


class TestKafkaContract(ProducerContract, FateContract):
    """Every contract test, on a fresh 4-partition topic with its own group and DLQ."""
