"""What a measure counts: payloads, the first-to-N-th counter, lateness, a process's RSS."""

from __future__ import annotations

import threading
import time
from typing import Any

from brokerq.testing.servers import percentile


def payload(size: int) -> bytes:
    """``size`` bytes starting ``0:`` (a body go-queue and brokerq both accept)."""
    return (b"0:" + b"x" * size)[:size]


class FirstToNth:
    """Counts handled messages; records the first and the N-th; sets ``done`` at N.

    Consume figures are timed from the first handled message to the N-th, so a Kafka group
    join or a connection set-up is not in them.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self, *_: Any, **__: Any) -> None:
        t = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first = t
            if self.count == self.n:
                self.last = t
                self.done.set()

    def add(self, k: int) -> None:
        """``k`` handled at once (a batch): the first and the N-th are the batch's time."""
        t = time.perf_counter()
        with self._lock:
            before = self.count
            self.count += k
            if before == 0:
                self.first = t
            if before < self.n <= self.count:
                self.last = t
                self.done.set()

    def result(self, timeout: float) -> float:
        """Seconds from the first to the N-th; RuntimeError when N is not reached in ``timeout``."""
        if not self.done.wait(timeout):
            raise RuntimeError(f"only {self.count} of {self.n} handled in {timeout:.0f}s")
        return self.last - self.first


def lateness_stats(late_ms: list[float]) -> dict[str, Any]:
    """p50 / p99 / max / min lateness in milliseconds, and how many ran early (< 0)."""
    v = sorted(late_ms)
    return {
        "lateness_ms_p50": percentile(v, 0.50),
        "lateness_ms_p99": percentile(v, 0.99),
        "lateness_ms_max": v[-1] if v else float("nan"),
        "lateness_ms_min": v[0] if v else float("nan"),
        "early": sum(1 for x in v if x < 0),
    }


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc); NaN when it is not there."""
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return float("nan")
