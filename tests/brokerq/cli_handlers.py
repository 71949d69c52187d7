"""Handlers the CLI tests run inside real ``brokerq run`` processes."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
import time

from brokerq import Message


def record(msg: Message) -> None:
    """Append the value to $BQ_RECORD, after sleeping $BQ_SLEEP seconds; first append it to
    $BQ_STARTED when that is set (tests wait for it instead of polling stats)."""
    started = os.environ.get("BQ_STARTED")
    if started:
        with open(started, "a") as f:
            f.write(msg.value.decode() + "\n")
    time.sleep(float(os.environ.get("BQ_SLEEP", "0")))
    if os.environ.get("BQ_FAIL"):
        raise RuntimeError("told to fail")
    with open(os.environ["BQ_RECORD"], "a") as f:
        f.write(msg.value.decode() + "\n")


def _note(line: str) -> None:
    with open(os.environ["BQ_RECORD"], "a") as f:  # one write per line: whole lines
        f.write(line + "\n")


def fates(msg: Message) -> None:
    """By value: ``exit`` kills the process, ``sysexit`` raises SystemExit, ``loop`` sleeps
    forever in Python, ``c`` blocks 30 s inside C; anything else is recorded as done.
    Records ``start <value> <attempt> <thread>`` first."""
    value = msg.value.decode()
    _note(f"start {value} {msg.attempt} {threading.get_ident()} {os.getpid()}")
    if value == "exit":
        os._exit(3)
    if value == "sysexit":
        sys.exit(1)
    if value == "loop":
        while True:
            time.sleep(0.1)
    if value == "c":
        ctypes.CDLL(None).sleep(30)  # uninterruptible: no bytecode runs until it returns
    _note(f"done {value}")


async def fates_async(msg: Message) -> None:
    """``await60`` awaits 60 s; anything else is recorded as done."""
    value = msg.value.decode()
    _note(f"start {value} {msg.attempt} 0 {os.getpid()}")
    if value == "await60":
        await asyncio.sleep(60)
    _note(f"done {value}")


def three(a, b, c):
    """Not a handler: it needs three arguments."""


class NotMiddleware:
    """A class that is not a brokerq Middleware."""


def stamp(msg: Message) -> None:
    """Append ``S <id> <attempt> <time>`` to ``$BQ_RECORD_DIR/<pid>.log`` when the job starts
    (one write per line), then sleep ``$BQ_SLEEP`` seconds (default 0)."""
    line = f"S {msg.id} {msg.attempt} {time.time():.6f}\n"
    with open(os.path.join(os.environ["BQ_RECORD_DIR"], f"{os.getpid()}.log"), "a") as f:
        f.write(line)
    time.sleep(float(os.environ.get("BQ_SLEEP", "0")))


def gated(msg: Message) -> None:
    """Record ``start <value> <attempt>``, wait until the file ``$BQ_GO`` exists (60 s at
    most), then fail with ``boom <attempt>`` when the value starts with ``fail``."""
    value = msg.value.decode()
    _note(f"start {value} {msg.attempt}")
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["BQ_GO"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    if value.startswith("fail"):
        raise RuntimeError(f"boom {msg.attempt}")
    _note(f"done {value}")
