"""The shared Producer/Source contract, against a real Kafka broker."""

from __future__ import annotations

import pytest

from tests.contract import ProducerContract

pytestmark = pytest.mark.integration


class TestKafkaContract(ProducerContract):
    """Every contract test, on a fresh 4-partition topic with its own group and DLQ."""
