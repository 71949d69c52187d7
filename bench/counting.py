"""A no-op handler for measures that run a real ``brokerq run`` (``bench.counting:count``).

Each process that imports it counts the messages it handled and, from the first one on,
writes ``<monotonic time> <count> <first> <last>`` lines to ``$BQ_BENCH_COUNT_DIR/<pid>``
every 50 ms (CLOCK_MONOTONIC is system-wide on Linux, so times of several processes compare).
The parent sums the files. Kept apart from the measures so a child imports nothing else.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

INTERVAL = 0.05  # seconds between two lines of a process's file
ENV = "BQ_BENCH_COUNT_DIR"

_state = {"count": 0, "first": 0.0, "last": 0.0}
_lock = threading.Lock()


def count(msg: Any) -> None:
    """The handler: counts one message."""
    t = time.monotonic()
    with _lock:
        s = _state
        s["count"] += 1
        s["last"] = t
        if s["count"] > 1:
            return
        s["first"] = t
    threading.Thread(target=_report, daemon=True, name="bench-count").start()


def _report() -> None:
    path = os.path.join(os.environ[ENV], str(os.getpid()))
    with open(path, "a", buffering=1) as f:
        while True:
            s = _state
            f.write(f"{time.monotonic():.6f} {s['count']} {s['first']:.6f} {s['last']:.6f}\n")
            time.sleep(INTERVAL)
