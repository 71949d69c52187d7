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
