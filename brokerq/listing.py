"""Listing a queue's jobs by state (the dashboard's queue page): the ``Broker.jobs`` contract.

Kept out of brokerq.broker (which stays small): ``Broker`` inherits ``JobListing``, whose
default raises NotSupported; a backend that can list overrides ``jobs``.

States one can list (``LIST_STATES``): ``pending`` (ready now), ``delayed`` (waiting for its
due time; a retry waiting for its backoff is reported as ``retrying``), ``running`` (held by a
worker) and ``dead`` (dead letters). Each ``JobInfo`` carries the message when the backend has
it, so the page can show a payload preview.
"""

from __future__ import annotations

from brokerq.errors import NotSupported
from brokerq.records import JobInfo

LIST_STATES = ("pending", "delayed", "running", "dead")
MAX_LIMIT = 1000
"""The most jobs one ``jobs`` call returns, whatever ``limit`` asks."""


def check_listing(state: str, limit: int, offset: int) -> tuple[int, int]:
    """``(limit, offset)`` clamped to ``0..MAX_LIMIT`` and ``>= 0``; ValueError for a state
    not in LIST_STATES."""
    if state not in LIST_STATES:
        raise ValueError(f"state must be one of {', '.join(LIST_STATES)}, not {state!r}")
    return max(0, min(MAX_LIMIT, int(limit))), max(0, int(offset))


class JobListing:
    """The ``jobs`` operation of ``Broker`` (default: NotSupported)."""

    def jobs(self, state: str, limit: int = 50, offset: int = 0) -> list[JobInfo]:
        """Up to ``limit`` jobs in ``state`` (one of LIST_STATES) after skipping ``offset``,
        in the order they would run (dead letters: oldest failure first).

        Raises ValueError for an unknown state, NotSupported where the backend cannot list.
        """
        check_listing(state, limit, offset)
        name = getattr(self, "name", type(self).__name__)
        raise NotSupported(f"the {name} broker cannot list its {state} jobs")
