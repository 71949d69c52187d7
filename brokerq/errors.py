"""Every error brokerq raises, in one tree, so callers catch ours and never a driver's.

    BrokerqError
    ├── ConfigError              bad YAML, unknown key, wrong type, unknown handler or broker
    ├── BrokerError              something went wrong talking to a broker
    │   ├── ConnectionFailed     the broker cannot be reached
    │   ├── DeliveryError        a message could not be written (or some of a batch failed)
    │   ├── MessageTooLarge      a message is over the broker's size limit
    │   ├── DuplicateJob         a live job already has this caller-chosen id
    │   └── NotSupported         the broker cannot do this (e.g. delay on a plain stream)
    ├── DecodeError              a stored message or payload cannot be decoded / validated
    ├── TimeLimitExceeded        raised inside a handler that ran past its time limit
    ├── WorkerCrashed            a message redelivered past max_attempts: its handler kills workers
    ├── BatchFailed              raised by a batch handler: only these items failed
    ├── Retry                    raised by a handler: retry after a given delay
    └── Drop                     raised by a handler: dead-letter now, do not retry

Backends translate driver errors at the boundary and chain them (``raise ... from e``).
"""

from __future__ import annotations

from collections.abc import Mapping


class BrokerqError(Exception):
    """Base of every brokerq exception."""


class ConfigError(BrokerqError):
    """Configuration is invalid; the message names the file, key path and line when known."""


class BrokerError(BrokerqError):
    """A broker operation failed."""


class ConnectionFailed(BrokerError):
    """The broker (or one of its nodes) cannot be reached."""


class DeliveryError(BrokerError):
    """One or more messages could not be delivered to the broker."""

    def __init__(self, message: str, *, failed: int = 1) -> None:
        super().__init__(message)
        self.failed = failed


class MessageTooLarge(BrokerError):
    """A message exceeds the broker's maximum size."""


class DuplicateJob(BrokerError):
    """A job with this caller-chosen id is still pending, delayed, running or reserved.

    ``job_id`` and ``state`` (pending, delayed, running, retrying, done, ...) say which.
    """

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id!r} already exists ({state})")
        self.job_id = job_id
        self.state = state


class NotSupported(BrokerError):
    """The broker has no such capability."""


class DecodeError(BrokerqError):
    """A message body or payload could not be decoded or validated."""


class TimeLimitExceeded(BrokerqError):
    """Raised in a handler's thread (or its task cancelled) when it runs past its time limit.

    The job then follows the retry policy like any other failure (dramatiq's TimeLimit rule).
    """


class WorkerCrashed(BrokerqError):
    """Recorded for a message delivered more than ``max_attempts`` times without ever being
    settled: its handler kills the worker process (segfault, OOM, ``os._exit``)."""


class BatchFailed(BrokerqError):
    """Raise from a batch handler when only some items failed: ``failures`` maps each failed
    item's index in the batch to its error (an exception, or text). The other items are done;
    each failed one follows the retry policy on its own."""

    def __init__(self, failures: Mapping[int, BaseException | str]) -> None:
        super().__init__(f"{len(failures)} item(s) of the batch failed")
        self.failures = dict(failures)


class Retry(BrokerqError):
    """Raise from a handler to retry the message after ``after`` seconds (counts as an attempt)."""

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        super().__init__(
            reason or (f"retry requested after {after}s" if after else "retry requested")
        )
        self.after = after


class Drop(BrokerqError):
    """Raise from a handler to dead-letter the message at once, without further retries."""
