"""A handler for the supervisor test: records ``pid value`` lines (one process per line)."""

from __future__ import annotations

import os
import time

from brokerq.message import Message


def record(msg: Message) -> None:
    time.sleep(0.05)
    with open(os.environ["BQ_RECORD"], "a") as f:
        f.write(f"{os.getpid()} {os.environ.get('BROKERQ_WORKER_INDEX', '-')} {msg.text()}\n")
