"""Claims a consumer holds in Redis, kept alive by one housekeeping thread.

A job held or running here owns a Redis claim (``SET NX PX claim_ttl``). The keepalive
thread renews every claim each ``claim_ttl / 3`` seconds, except one whose delivery is past
its ``deadline`` (its time limit and grace, brokerq.timelimit): that claim runs out, so
another worker may take the job while the stuck handler's thread is abandoned.

Settlements that could not be recorded because Redis was down wait here (their copy stays
reserved and touched) and are recorded, in order, once Redis answers; the handler is never
run again for them. The thread also calls ``on_tick`` every ``TICK`` seconds (the source's
sweep of jobs that no thread could start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerq.broker import Delivery
from brokerq.errors import ConnectionFailed
from brokerq_beanstalk.guard import Guard

logger = logging.getLogger(__name__)

TICK = 0.1  # seconds between housekeeping turns


@dataclass(slots=True)
class Pending:
    """A settlement whose Redis record waits for Redis; ``then`` runs once it is recorded."""

    message_id: str
    record: Callable[[], None]
    then: Callable[[], None]


class RedisPause:
    """Backoff of reserving while Redis is down (0.25 s doubling to 5 s): no handler ever
    runs unguarded, and a Redis outage is not hammered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._backoff = 0.0

    def paused(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, e: Exception) -> None:
        with self._lock:
            self._backoff = min(5.0, self._backoff * 2 or 0.25)
            self._until = time.monotonic() + self._backoff
        logger.warning("redis unavailable, consumption paused %.2fs: %s", self._backoff, e)

    def ok(self) -> None:
        if self._backoff:
            with self._lock:
                self._backoff = 0.0
            logger.info("redis available again, consumption resumes")


class Claims:
    """Claims to renew (token → delivery) and settlements waiting for Redis."""

    def __init__(self, guard: Guard, claim_ttl: float, on_tick: Callable[[], None]) -> None:
        self.guard = guard
        self.claim_ttl = claim_ttl
        self._on_tick = on_tick
        self._lock = threading.Lock()
        self._held: dict[str, Delivery[Any]] = {}
        self._expired: set[str] = set()  # tokens past their deadline, logged once
        self._pending: list[Pending] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="brokerq-dq-claims", daemon=True)

    # -- registry ---------------------------------------------------------------------------
    def add(self, token: str, delivery: Delivery[Any]) -> None:
        with self._lock:
            self._held[token] = delivery

    def remove(self, token: str) -> None:
        """Stop renewing (the Redis record that follows drops or expires the claim)."""
        with self._lock:
            self._held.pop(token, None)
            self._expired.discard(token)

    def defer(self, pending: Pending) -> None:
        """Record ``pending`` once Redis answers again."""
        with self._lock:
            self._pending.append(pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the thread -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        every = min(1.0, self.claim_ttl / 3)
        last = time.monotonic()
        while not self._stop.wait(TICK):
            try:
                self._on_tick()
            except Exception:
                logger.exception("dq housekeeping failed")
            if time.monotonic() - last < every:
                continue
            last = time.monotonic()
            if self._pending:
                self.flush()
            self.renew()

    def renew(self) -> None:
        """Renew every claim still within its delivery's deadline."""
        now = time.time()
        with self._lock:
            claims: list[tuple[str, str]] = []
            for token, d in self._held.items():
                if d.renewable(now):
                    claims.append((d.message.id, token))
                elif token not in self._expired:
                    self._expired.add(token)
                    logger.warning(
                        "job %s: past its time limit and grace, its claim is no longer renewed",
                        d.message.id,
                    )
        try:
            kept = self.guard.renew(claims)
        except ConnectionFailed as e:
            logger.warning("could not renew %d claim(s): %s", len(claims), e)
            return
        for (job_id, token), ok in zip(claims, kept, strict=False):
            if not ok and token in self._held:
                logger.warning("job %s: claim expired while held; it may run twice", job_id)

    def flush(self) -> None:
        """Record the deferred settlements, in order, until Redis fails again."""
        with self._lock:
            pending, self._pending = self._pending, []
        for i, p in enumerate(pending):
            try:
                p.record()
            except ConnectionFailed:
                with self._lock:
                    self._pending[:0] = pending[i:]
                return
            p.then()
        if pending:
            logger.info("recorded %d settlement(s) delayed by a redis outage", len(pending))
