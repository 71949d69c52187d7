"""decide(): one pure rule for a message's fate; Failure keeps type and traceback."""

from __future__ import annotations

import pickle

from brokerq.errors import DecodeError, Drop, Retry, WorkerCrashed
from brokerq.message import Message
from brokerq.outcome import DEAD, OK, RETRY, Failure, decide, poison
from brokerq.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, backoff=2, jitter=False)


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as e:
        return e


def test_decide() -> None:
    first, last = Message(b"x"), Message(b"x", attempt=3)
    assert decide(first, None, POLICY).kind == OK
    retry = decide(first, _raised(ZeroDivisionError("division by zero")), POLICY)
    assert (retry.kind, retry.delay) == (RETRY, 2.0)
    assert retry.failure == "ZeroDivisionError: division by zero"
    assert retry.failure is not None and "Traceback" in retry.failure.traceback
    assert decide(last, ValueError("x"), POLICY).kind == DEAD
    assert decide(first, Drop("no"), POLICY).kind == DEAD
    assert decide(first, DecodeError("bad"), POLICY).kind == DEAD
    asked = decide(first, Retry(after=7), POLICY)
    assert (asked.kind, asked.delay) == (RETRY, 7.0)
    assert decide(last, Retry(after=7), POLICY).kind == DEAD
    assert decide(first, SystemExit(1), POLICY).kind == RETRY


def test_poison_names_the_crash() -> None:
    out = poison(Message(b"x", attempt=4), 3)
    assert out.kind == DEAD and out.failure is not None
    assert out.failure.type == WorkerCrashed.__name__
    assert "delivered 4 times" in out.failure


def test_failure_is_text_with_parts() -> None:
    f = Failure("KeyError", "'missing'", "tb")
    assert f == "KeyError: 'missing'" and f.type == "KeyError" and f.traceback == "tb"
    assert Failure.parse("ValueError: bad").type == "ValueError"
    assert Failure.parse("no type here").message == "no type here"
    back = pickle.loads(pickle.dumps(f))
    assert (back, back.type, back.traceback) == (f, f.type, f.traceback)
