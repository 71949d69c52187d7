from __future__ import annotations

import pytest
from pydantic import ValidationError

from brokerq.retry import RetryPolicy


def test_exponential_and_capped_without_jitter() -> None:
    p = RetryPolicy(max_attempts=10, backoff="1s", max_backoff="5s", jitter=False)
    assert [p.delay(a) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_half_to_full() -> None:
    p = RetryPolicy(backoff=2.0, max_backoff=100.0)
    for attempt in range(1, 6):
        base = min(100.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            assert base / 2 <= p.delay(attempt) <= base


def test_should_retry_counts_the_first_attempt() -> None:
    p = RetryPolicy(max_attempts=3)
    assert [p.should_retry(a) for a in (1, 2, 3)] == [True, True, False]


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(backoff="soon")
    with pytest.raises(ValidationError):
        RetryPolicy(tries=3)  # type: ignore[call-arg]
