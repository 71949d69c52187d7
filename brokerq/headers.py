"""Header names brokerq reserves on every backend (``brokerq-`` prefix; user headers pass through).

Values are text. Backends that store whole envelopes keep them in ``Message.headers``;
Kafka carries them as record headers. A consumer that does not know a header ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "brokerq-"

TYPE = "brokerq-type"  # job type, picks the handler in a ``handlers:`` map
TIME_LIMIT = "brokerq-time-limit"  # seconds a handler may run for this message
SCHEDULE = "brokerq-schedule"  # name of the schedule that fired this message
FIRE_TIME = "brokerq-fire-time"  # ISO 8601 UTC instant of the schedule's tick
ERROR_TYPE = "brokerq-error-type"  # dead letters: the failure's exception type
TRACEBACK = "brokerq-traceback"  # dead letters: the failure's traceback (may be cut)


def time_limit_of(headers: object) -> float | None:
    """The ``brokerq-time-limit`` header as seconds, or None when absent or not a number."""
    get = getattr(headers, "get", None)
    raw = get(TIME_LIMIT) if get is not None else None
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def with_options(
    headers: Mapping[str, str] | None,
    *,
    time_limit: float | None = None,
    type: str | None = None,
) -> Mapping[str, str] | None:
    """``headers`` plus the ``brokerq-time-limit`` / ``brokerq-type`` headers the push options
    ask for (unchanged, not copied, when there are none). ValueError for a time limit that is
    not a positive number of seconds or an empty type."""
    if time_limit is None and type is None:
        return headers
    out = dict(headers or {})
    if time_limit is not None:
        if not (isinstance(time_limit, (int, float)) and 0 < time_limit < float("inf")):
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        out[TIME_LIMIT] = repr(float(time_limit))
    if type is not None:
        if not type:
            raise ValueError("type must be a non-empty string")
        out[TYPE] = type
    return out
