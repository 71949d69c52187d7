"""The heartbeat every ``brokerq run`` writes to its broker, so ``brokerq web`` lists live workers.

One thread beats every ``every`` seconds with a ``WorkerInfo`` whose entry expires after
``ttl`` seconds (default three beats): a killed worker disappears from the list within ``ttl``.
Where the broker keeps no heartbeats (``NotSupported``) the thread logs that once and ends; a
failing beat (broker down) is logged and tried again at the next beat, never raised into the
worker. Backends store it natively: sqlite a table, dq a Redis key with a TTL, kq nothing (the
consumer group's own membership is the heartbeat).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from types import TracebackType
from typing import Any

from brokerq.broker import Broker, WorkerInfo
from brokerq.errors import BrokerqError, NotSupported

logger = logging.getLogger(__name__)

DEFAULT_EVERY = 5.0
"""Seconds between beats."""


def to_json(info: WorkerInfo) -> str:
    """A WorkerInfo as JSON, how backends store a beat."""
    return json.dumps(asdict(info))


def from_json(text: str | bytes) -> WorkerInfo | None:
    """The WorkerInfo in ``text`` (unknown keys ignored), or None when it is not one."""
    try:
        data: dict[str, Any] = json.loads(text)
        return WorkerInfo(**{k: v for k, v in data.items() if k in WorkerInfo.__dataclass_fields__})
    except (ValueError, TypeError):
        return None


def by_name(workers: list[WorkerInfo]) -> list[WorkerInfo]:
    """Workers sorted by name, host and pid (how ``Broker.workers`` lists them)."""
    return sorted(workers, key=lambda w: (w.name, w.host, w.pid))


def queue_of(config: Any) -> str:
    """The queue / topic / tube a broker config section names (``""`` when none)."""
    for attr in ("topic", "queue"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    nodes = getattr(config, "beanstalks", None) or []
    return str(getattr(nodes[0], "tube", "")) if nodes else ""


def _read(counter: Callable[[], int]) -> int:
    try:
        return int(counter())
    except Exception:  # a counter must never stop the heartbeat
        return 0


class Heartbeat:
    """Beats for one worker process until ``stop()`` (a context manager starts and stops it)."""

    def __init__(
        self,
        broker: Broker,
        *,
        name: str,
        queue: str,
        concurrency: int,
        in_flight: Callable[[], int] = lambda: 0,
        processed: Callable[[], int] | None = None,
        every: float = DEFAULT_EVERY,
        ttl: float | None = None,
    ) -> None:
        if every <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.broker = broker
        self.every = every
        self.ttl = ttl if ttl is not None else 3 * every
        self._in_flight = in_flight
        self._processed = processed  # jobs handled so far (the dashboard charts throughput)
        self._base: dict[str, Any] = {
            "name": name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": concurrency,
            "started": time.time(),
            "queue": queue,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def info(self) -> WorkerInfo:
        """What the next beat writes."""
        extra: dict[str, Any] = {"in_flight": _read(self._in_flight)}
        if self._processed is not None:
            extra["processed"] = _read(self._processed)
        return WorkerInfo(last_beat=time.time(), **self._base, **extra)

    def beat(self) -> bool:
        """Write one beat now; False when the broker keeps no heartbeats."""
        try:
            self.broker.heartbeat(self.info(), self.ttl)
        except NotSupported as e:
            logger.debug("no worker heartbeat: %s", e)
            return False
        except BrokerqError as e:
            logger.warning("heartbeat failed (trying again in %.0fs): %s", self.every, e)
            return True
        self.beats += 1
        return True

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="brokerq-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while self.beat() and not self._stop.wait(self.every):
            pass

    def stop(self) -> None:
        """Stop beating (the entry then expires after ``ttl``). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.every + 10)
        self._thread = None

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
