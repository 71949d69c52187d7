"""Time limits: a watchdog that interrupts handlers past their limit and replaces stuck ones.

Each worker thread owns a ``Slot``. While its handler runs the slot records the deliveries
it handles (one, or a batch) and its limit (the message's ``brokerq-time-limit`` header, else the worker's ``time_limit``).

- At the limit, a **sync** handler gets ``TimeLimitExceeded`` raised in its thread
  (``PyThreadState_SetAsyncExc``: checked between bytecodes, as dramatiq's TimeLimit
  middleware does). An **async** handler is cancelled by its own ``asyncio.wait_for``
  (brokerq.handler), so the watchdog leaves it alone until the grace runs out.
- At limit + ``grace`` a handler still running cannot be interrupted (blocked in C): the
  watchdog calls ``on_abandon(slot, deliveries)``; the Worker settles them as failed with
  ``TimeLimitExceeded`` and starts a fresh thread, so ``concurrency`` stays N. The
  delivery's ``deadline`` is limit + grace, and sources never renew a lease or claim past it.

The exception is only ever raised while the slot is inside the handler: ``leave`` takes the
same lock and clears an exception that was set but not yet raised.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from brokerq.broker import Delivery
from brokerq.errors import TimeLimitExceeded

logger = logging.getLogger(__name__)

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
# The same C function, called with NULL to clear an exception that was set but not raised
# (passing None through py_object would set Py_None as the exception instead).
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


class Slot:
    """One worker thread's place; touched by that thread and the watchdog, under ``lock``."""

    __slots__ = (
        "abandoned",
        "deliveries",
        "interrupted",
        "is_async",
        "limit",
        "lock",
        "started",
        "thread_id",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id = 0
        self.deliveries: list[Delivery[Any]] = []
        self.started = 0.0  # monotonic
        self.limit: float | None = None
        self.is_async = False
        self.interrupted = False
        self.abandoned = False

    def enter(
        self,
        deliveries: list[Delivery[Any]],
        limit: float | None,
        grace: float,
        is_async: bool,
    ) -> None:
        """The handler is about to run ``deliveries`` (called on the slot's own thread)."""
        with self.lock:
            self.thread_id = threading.get_ident()
            self.deliveries = deliveries
            self.started = time.monotonic()
            self.limit = limit
            self.is_async = is_async
            self.interrupted = False
            if limit is not None:
                deadline = time.time() + limit + grace
                for delivery in deliveries:
                    delivery.deadline = deadline

    def leave(self) -> bool:
        """The handler returned or raised; True when its time limit was hit meanwhile.

        Clears a ``TimeLimitExceeded`` that was set but not raised yet, so it can never
        escape into the worker's own code.
        """
        with self.lock:
            interrupted = self.interrupted
            if interrupted:
                _clear_async_exc(self.thread_id, None)
            self.deliveries = []
            self.interrupted = False
            return interrupted


class Watchdog:
    """Checks every slot a few times a second; one thread per Worker."""

    def __init__(
        self,
        slots: Callable[[], list[Slot]],
        grace: float,
        on_abandon: Callable[[Slot, list[Delivery[Any]]], None],
        tick: float = 0.1,
    ) -> None:
        self._slots = slots
        self.grace = grace
        self._on_abandon = on_abandon
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="brokerq-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            for slot in self._slots():
                try:
                    self._check(slot, now)
                except Exception:
                    logger.exception("time-limit check failed")

    def _check(self, slot: Slot, now: float) -> None:
        abandon: list[Delivery[Any]] = []
        with slot.lock:
            deliveries, limit = slot.deliveries, slot.limit
            if not deliveries or limit is None or slot.abandoned:
                return
            over = now - slot.started - limit
            if over < 0:
                return
            if not slot.interrupted and not slot.is_async:
                slot.interrupted = True
                logger.warning(
                    "message %s: handler past its time limit of %.3gs, interrupting it",
                    deliveries[0].message.id,
                    limit,
                )
                _set_async_exc(slot.thread_id, TimeLimitExceeded)
            elif over >= self.grace:
                slot.abandoned = True
                slot.deliveries = []
                abandon = deliveries
        if abandon:
            logger.error(
                "message %s: handler still running %.3gs past its time limit of %.3gs "
                "(blocked in C?); its thread is abandoned and a fresh one takes the slot",
                abandon[0].message.id,
                self.grace,
                limit,
            )
            self._on_abandon(slot, abandon)


def exceeded(limit: float | None) -> TimeLimitExceeded:
    """The error recorded for a handler stopped at ``limit`` seconds."""
    if limit is None:
        return TimeLimitExceeded("handler ran past its time limit")
    return TimeLimitExceeded(f"handler ran past its time limit of {limit:.3g}s")
