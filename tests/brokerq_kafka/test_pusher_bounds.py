"""Every Pusher wait is bounded by push_timeout, Ctrl-C works, and undelivered messages are
reported at close and at exit (issue 11 #7). Timing bounds here are correctness bounds (the
301 s hang), generous against a loaded machine."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brokerq.errors import DeliveryError
from brokerq_kafka import Pusher

UNREACHABLE = "127.0.0.1:1"
ROOT = Path(__file__).resolve().parents[2]


def test_close_gives_up_after_push_timeout_and_reports() -> None:
    pusher = Pusher(UNREACHABLE, "t", push_timeout=1.0)
    pusher.push(b"a")
    pusher.push(b"b")
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="2 message"):
        pusher.close()
    assert time.monotonic() - start < 10
    pusher.close()  # idempotent


def test_flush_is_bounded_by_push_timeout() -> None:
    pusher = Pusher(UNREACHABLE, "t", push_timeout=1.0)
    pusher.push(b"a")
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="not acknowledged"):
        pusher.flush()
    assert time.monotonic() - start < 10
    with pytest.raises(DeliveryError):
        pusher.close()


SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from brokerq_kafka import Pusher
p = Pusher({bootstrap!r}, "t", push_timeout={timeout})
p.push(b"lost")
{tail}
"""


def run_script(tail: str, timeout: float = 1.0) -> subprocess.Popen[str]:
    code = SCRIPT.format(bootstrap=UNREACHABLE, timeout=timeout, tail=tail)
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )


def test_exit_without_close_is_bounded_and_reported() -> None:
    proc = run_script("sys.exit(0)")
    start = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert time.monotonic() - start < 30, "the exit flush hung"
    assert "ERROR" in err and "not delivered" in err, err


def test_ctrl_c_interrupts_a_long_flush() -> None:
    proc = run_script("print('ready', file=sys.stderr, flush=True); p.flush(120)", timeout=120)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "ready" in line:
            break
    time.sleep(0.5)
    start = time.monotonic()
    # Ctrl-C as a user presses it: once for flush(120), again for the exit flush (bounded by
    # push_timeout=120 s), again if the machine was too slow to be in it yet
    for _ in range(10):
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(2.0)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert time.monotonic() - start < 20, "Ctrl-C did not interrupt the flush"
    assert "KeyboardInterrupt" in err
