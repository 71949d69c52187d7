"""A message's fate, decided once by a pure function; sources only carry it out.

``decide(message, error, policy)`` turns what the handler did into an ``Outcome``:

- no error → OK;
- ``Drop`` or ``DecodeError`` (a payload that cannot fit the handler) → DEAD at once;
- ``Retry(after=...)`` → RETRY after that delay while attempts remain, else DEAD;
- any other exception → RETRY with the policy's backoff while attempts remain, else DEAD.

The recorded failure is always the handler's own (type, message and traceback); a source
that cannot carry an outcome out (a dead-letter write refused, Redis down) gives the
delivery back and the Worker re-applies the same outcome when it comes again, without
running the handler a second time (brokerq.worker). This is dramatiq's split: the Retries
middleware decides and the broker executes.
"""

from __future__ import annotations

import builtins
import traceback as _traceback
from dataclasses import dataclass
from typing import Literal

from brokerq.errors import DecodeError, Drop, Retry, WorkerCrashed
from brokerq.message import Message
from brokerq.retry import RetryPolicy

OK: Literal["ok"] = "ok"
RETRY: Literal["retry"] = "retry"
DEAD: Literal["dead"] = "dead"
Kind = Literal["ok", "retry", "dead"]

TRACEBACK_LIMIT = 16 * 1024  # characters of traceback kept with a failure


class Failure(str):
    """Why a message failed: ``"Type: message"`` as a string, with the parts as attributes.

    A ``str`` so that every source can store it as text; ``type``, ``message`` and
    ``traceback`` (up to ``TRACEBACK_LIMIT`` characters, may be empty) for those that keep more.
    """

    type: str
    message: str
    traceback: str

    def __new__(cls, type: str, message: str = "", traceback: str = "") -> Failure:
        self = super().__new__(cls, f"{type}: {message}" if message else type)
        self.type = type
        self.message = message
        self.traceback = traceback[-TRACEBACK_LIMIT:]
        return self

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        """The failure an exception describes, with its traceback."""
        tb = "".join(_traceback.format_exception(type(error), error, error.__traceback__))
        return cls(type(error).__name__, str(error), tb)

    @classmethod
    def parse(cls, text: str, traceback: str = "") -> Failure:
        """Rebuild a failure stored as ``"Type: message"`` text."""
        if isinstance(text, Failure):
            return text
        head, sep, rest = text.partition(": ")
        if sep and head.isidentifier():
            return cls(head, rest, traceback)
        return cls("Error", text, traceback)

    def __reduce__(self) -> tuple[builtins.type[Failure], tuple[str, str, str]]:
        return (Failure, (self.type, self.message, self.traceback))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to a delivery: OK, RETRY after ``delay`` seconds, or DEAD with ``failure``."""

    kind: Kind
    delay: float = 0.0
    failure: Failure | None = None


OUTCOME_OK = Outcome(OK)


def decide(message: Message, error: BaseException | None, policy: RetryPolicy) -> Outcome:
    """The outcome of one handling of ``message`` that ended with ``error`` (None: success)."""
    if error is None:
        return OUTCOME_OK
    failure = Failure.of(error)
    if isinstance(error, (Drop, DecodeError)):
        return Outcome(DEAD, 0.0, failure)
    if not policy.should_retry(message.attempt):
        return Outcome(DEAD, 0.0, failure)
    if isinstance(error, Retry) and error.after is not None:
        return Outcome(RETRY, max(0.0, float(error.after)), failure)
    return Outcome(RETRY, policy.delay(message.attempt), failure)


def poison(message: Message, max_attempts: int) -> Outcome:
    """DEAD for a message redelivered past ``max_attempts`` without ever being settled.

    That happens when its handler kills the worker process (segfault, OOM, ``os._exit``)
    every time: it must not crash-loop forever.
    """
    return Outcome(DEAD, 0.0, Failure.of(crashed(message, max_attempts)))


def crashed(message: Message, max_attempts: int) -> WorkerCrashed:
    """The error recorded for a message whose handler keeps killing its worker."""
    return WorkerCrashed(
        f"delivered {message.attempt} times without being settled "
        f"(max_attempts={max_attempts}): the worker process died while handling it"
    )
