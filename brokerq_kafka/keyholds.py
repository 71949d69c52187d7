"""Key holds: with ``key_ordering``, a key whose message is waiting in a retry topic stays
busy, so the key's later messages wait behind its retry.

The failed delivery keeps its key's lane in the Dispatcher (the source does not call
``done`` for it); when its retry record comes back, the poller hands it out as the lane's
holder (``take``), and settling the retry passes the key on. A hold whose retry record does
not come back to this member (another member reads that retry partition, or it was lost
with a crash) lapses ``HOLD_GRACE`` seconds after the retry's due time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

HOLD_GRACE = 60.0


class KeyHolds:
    """Keys held by a pending retry; thread-safe."""

    def __init__(self, release: Callable[[Any], None]) -> None:
        self._release = release  # Dispatcher.done: hands the key on
        self._lock = threading.Lock()
        self._held: dict[Hashable, tuple[Any, float]] = {}

    def hold(self, key: Hashable, delivery: Any, due: float) -> None:
        with self._lock:
            old = self._held.get(key)
            self._held[key] = (old[0] if old else delivery, due + HOLD_GRACE)

    def take(self, key: Hashable) -> bool:
        """True when ``key`` was held (the caller's retry record now holds it)."""
        if not self._held:
            return False
        with self._lock:
            return self._held.pop(key, None) is not None

    def expire(self, now: float) -> None:
        if not self._held:
            return
        with self._lock:
            gone = [k for k, (_, until) in self._held.items() if until <= now]
            items = [self._held.pop(k)[0] for k in gone]
        for item in items:
            self._release(item)

    def __len__(self) -> int:
        return len(self._held)
