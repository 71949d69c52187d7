"""The handler scheduler process tests run in ``brokerq run``: one line per fired message.

Appends ``<fire time> <schedule> <received unix time> <pid> <id>`` to ``$BQ_FIRES``.
"""

from __future__ import annotations

import os
import time

from brokerq import Message
from brokerq.schedule import FIRE_TIME, SCHEDULE


def record(msg: Message) -> None:
    now = time.time()
    line = f"{msg.headers.get(FIRE_TIME)} {msg.headers.get(SCHEDULE)} {now:.6f} {os.getpid()} {msg.id}\n"
    with open(os.environ["BQ_FIRES"], "a") as f:  # one write per line
        f.write(line)
