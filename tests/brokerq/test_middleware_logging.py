"""LoggingMiddleware: one line per outcome; a traceback only for an error that was raised."""

from __future__ import annotations

import logging

import pytest

from brokerq.message import Message
from brokerq.middleware import DEAD, RETRY, LoggingMiddleware


def _raised() -> ValueError:
    try:
        raise ValueError("raised here")
    except ValueError as e:
        return e


def test_an_error_never_raised_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    # a BatchFailed item's error is built by the handler, never raised: logging it with
    # exc_info once added a bare "ValueError: bad item" line under the WARNING line
    caplog.set_level(logging.DEBUG, logger="brokerq.middleware")
    m = LoggingMiddleware()
    m.after_process(Message(b"x", id="m1", attempt=2), DEAD, ValueError("bad item"))
    m.after_process(Message(b"y", id="m2"), RETRY, ValueError("bad item"))
    text = caplog.text
    assert "message m1 dead after attempt 2: ValueError: bad item" in text
    assert "message m2 failed on attempt 1, will retry: ValueError: bad item" in text
    assert len(text.splitlines()) == 2, text
    assert all(r.exc_info is None for r in caplog.records)


def test_a_raised_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="brokerq.middleware")
    LoggingMiddleware().after_process(Message(b"x", id="m3"), DEAD, _raised())
    assert "Traceback" in caplog.text and "raise ValueError" in caplog.text
