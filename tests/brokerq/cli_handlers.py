"""Handlers the CLI tests run inside real ``brokerq run`` processes."""

from __future__ import annotations

import os
import time

from brokerq import Message


def record(msg: Message) -> None:
    """Append the value to $BQ_RECORD, after sleeping $BQ_SLEEP seconds."""
    time.sleep(float(os.environ.get("BQ_SLEEP", "0")))
    if os.environ.get("BQ_FAIL"):
        raise RuntimeError("told to fail")
    with open(os.environ["BQ_RECORD"], "a") as f:
        f.write(msg.value.decode() + "\n")
