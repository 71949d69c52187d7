"""brokerq.listing: the Broker.jobs contract's default and its argument rules."""

from __future__ import annotations

import pytest

from brokerq.errors import NotSupported
from brokerq.listing import MAX_LIMIT, JobListing, check_listing


def test_a_backend_that_cannot_list_says_so() -> None:
    class Plain(JobListing):
        name = "plain"

    with pytest.raises(NotSupported, match="plain broker cannot list its pending jobs"):
        Plain().jobs("pending")
    with pytest.raises(ValueError, match="state must be one of"):
        Plain().jobs("nonsense")


def test_limits_and_offsets_are_clamped() -> None:
    assert check_listing("dead", 10**9, -5) == (MAX_LIMIT, 0)
    assert check_listing("running", -1, 7) == (0, 7)
