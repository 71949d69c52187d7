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

_monotonic = time.monotonic
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
# The same C function, called with NULL to clear an exception that was set but not raised
# (passing None through py_object would set Py_None as the exception instead).
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


class Slot:
    """One worker thread's place. Its thread sets ``current`` while a handler runs and
    clears it in ``leave`` (one assignment each, no lock on that path: it runs for every
    message). The watchdog interrupts under ``lock`` in this order: raise ``interrupted``,
    check that ``current`` is still the handling it timed, fire (or lower the flag again).
    ``leave`` clears ``current`` and then reads ``interrupted``: when set, it takes the lock
    and clears a fired exception, so one never lands after ``leave`` returned."""

    __slots__ = ("abandoned", "current", "interrupted", "lock", "thread_id", "unix_offset")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id = 0
        # unix time = monotonic + unix_offset: one clock read per message, not two (a clock
        # read costs more than the rest of enter/leave together)
        self.unix_offset = time.time() - time.monotonic()
        # (deliveries, started (monotonic), limit, is_async) while a handler runs
        self.current: tuple[list[Delivery[Any]], float, float | None, bool] | None = None
        self.interrupted = False
        self.abandoned = False

    @property
    def deliveries(self) -> list[Delivery[Any]]:
        current = self.current
        return current[0] if current is not None else []

    def enter(
        self,
        deliveries: list[Delivery[Any]],
        limit: float | None,
        grace: float,
        is_async: bool,
    ) -> None:
        """The handler is about to run ``deliveries`` (called on the slot's own thread)."""
        started = _monotonic()
        if limit is not None:
            deadline = started + self.unix_offset + limit + grace
            for delivery in deliveries:
                delivery.deadline = deadline
        self.current = (deliveries, started, limit, is_async)

    def leave(self) -> bool:
        """The handler returned or raised; True when its time limit was hit meanwhile.

        Clears a ``TimeLimitExceeded`` that was set but not raised yet, so it can never
        escape into the worker's own code.
        """
        self.current = None
        if not self.interrupted:
            return False
        with self.lock:  # the watchdog may be between its check and its fire
            if not self.interrupted:
                return False
            _clear_async_exc(self.thread_id, None)
            self.interrupted = False
            return True


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
        current = slot.current
        if current is None or slot.abandoned:
            return
        deliveries, started, limit, is_async = current
        if limit is None or now - started < limit:
            return
        abandon: list[Delivery[Any]] = []
        with slot.lock:
            over = now - started - limit
            if not slot.interrupted and not is_async:
                slot.interrupted = True  # before the check: see Slot
                if slot.current is not current:  # finished meanwhile
                    slot.interrupted = False
                    return
                logger.warning(
                    "message %s: handler past its time limit of %.3gs, interrupting it",
                    deliveries[0].message.id,
                    limit,
                )
                _set_async_exc(slot.thread_id, TimeLimitExceeded)
            elif over >= self.grace and slot.current is current:
                slot.abandoned = True
                slot.current = None
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
