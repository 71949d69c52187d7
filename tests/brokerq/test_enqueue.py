"""brokerq.enqueue: the rules every backend's enqueue follows."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from brokerq.embedded import MemoryBroker
from brokerq.enqueue import MAX_JOB_ID, MAX_UNIQUE_FOR, check_job_id, unique_seconds


def test_job_ids_are_printable_ascii_without_spaces_up_to_128() -> None:
    assert check_job_id(None) is None
    assert check_job_id("order-42") == "order-42"
    assert check_job_id("x" * MAX_JOB_ID) == "x" * MAX_JOB_ID
    for bad in ("", "x" * (MAX_JOB_ID + 1), "a b", "é", "a\nb"):
        with pytest.raises(ValueError, match="job_id"):
            check_job_id(bad)
    with pytest.raises(TypeError, match="job_id"):
        check_job_id(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "seconds"), [(None, 0.0), (0, 0.0), (60, 60.0), (timedelta(hours=1), 3600.0)]
)
def test_unique_for_in_seconds(given: float | timedelta | None, seconds: float) -> None:
    assert unique_seconds(given, "id") == seconds


@pytest.mark.parametrize(
    "bad", [-1, math.inf, -math.inf, math.nan, 1e300, MAX_UNIQUE_FOR + 1, timedelta(days=-1)]
)
def test_unique_for_out_of_range_is_refused_before_anything_is_stored(bad: float) -> None:
    """A newcomer's 69-digit --unique-for was accepted, then broke the done mark in Redis."""
    with pytest.raises(ValueError, match="unique_for must be 0 to"):
        unique_seconds(bad, "id")
    broker = MemoryBroker()
    with broker.delay_producer() as producer, pytest.raises(ValueError, match="unique_for"):
        producer.delay(b"x", 1, job_id="id", unique_for=bad)
    assert broker.job("id") is None


def test_unique_for_needs_an_id_and_a_number() -> None:
    with pytest.raises(ValueError, match="needs a job_id"):
        unique_seconds(5, None)
    for bad in ("5", True):
        with pytest.raises(TypeError, match="unique_for"):
            unique_seconds(bad, "id")  # type: ignore[arg-type]
