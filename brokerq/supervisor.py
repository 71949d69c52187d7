"""Worker processes: ``processes: N`` runs N full consumers under one supervisor.

CPython runs one thread of Python at a time, so a consumer whose handlers are CPU-bound (or
whose per-message cost is the interpreter itself) scales with processes, not threads. Each
child is a complete ``brokerq run`` (a Kafka group member, a dq or sqlite consumer), started
as ``python -m brokerq run CONFIG --processes 1`` with ``BROKERQ_WORKER_INDEX`` = 0..N-1 in its
environment (metrics use it to pick one port per child).

- SIGTERM / SIGINT to the supervisor is passed to every child, which finishes its in-flight
  work within ``shutdown_timeout``; the supervisor waits that long (plus a margin), then
  kills what is left. A second signal kills the children at once (exit 130).
- A child that dies is logged with its exit code and started again after a backoff that
  doubles up to ``MAX_BACKOFF`` (reset once a child has run for ``STABLE_AFTER``).
- A child that exits with 3 (config) or 5 (not supported) is not restarted: the
  supervisor stops the others and exits with that code.
- Exit code: 0 when every child ended cleanly after a stop (0, or killed by the SIGTERM
  while still starting, before it took any work), else 1.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger(__name__)

INDEX_ENV = "BROKERQ_WORKER_INDEX"
MAX_BACKOFF = 30.0  # seconds between restarts of a child that keeps dying, at most
STABLE_AFTER = 60.0  # seconds a child must run before its backoff resets
KILL_MARGIN = 5.0  # seconds past shutdown_timeout before children are killed
PERMANENT = (
    3,
    5,
)  # child exit codes a restart cannot cure (brokerq.cli_common: config, unsupported)


class _Child:
    __slots__ = ("backoff", "index", "next_start", "proc", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 0.0
        self.next_start = 0.0


class Supervisor:
    """Starts, watches and stops N child consumers; ``run()`` blocks and returns the exit code.

    ``args``: the child's arguments after ``python -m brokerq`` (e.g. ``["run", CONFIG,
    "--processes", "1"]``).
    """

    def __init__(self, args: Sequence[str], processes: int, shutdown_timeout: float) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.args = list(args)
        self.children = [_Child(i) for i in range(processes)]
        self.shutdown_timeout = shutdown_timeout
        self._stopping = threading.Event()
        self._signals = 0
        self.failed = 0  # the permanent exit code of a child, if one stopped everything

    def run(self) -> int:
        self._install_signals()
        logger.info("supervisor: starting %d worker processes", len(self.children))
        while not self._stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                self._watch(child, now)
            self._stopping.wait(0.2)
        return self._stop_all()

    def stop(self) -> None:
        self._stopping.set()

    # -- internals ------------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        env = dict(os.environ, **{INDEX_ENV: str(child.index)})
        # a session of its own: a Ctrl-C in the terminal reaches the supervisor only, which
        # passes one SIGTERM on (two signals would make the child exit at once)
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "brokerq", *self.args],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.started = time.monotonic()
        logger.info("supervisor: worker %d started (pid %d)", child.index, child.proc.pid)

    def _watch(self, child: _Child, now: float) -> None:
        proc = child.proc
        if proc is None:
            if now >= child.next_start:
                self._start(child)
            return
        code = proc.poll()
        if code is None:
            if child.backoff and now - child.started > STABLE_AFTER:
                child.backoff = 0.0
            return
        child.proc = None
        if code in PERMANENT:  # a bad config or an unsupported setting: a restart fails again
            logger.error(
                "supervisor: worker %d exited with code %d (config or unsupported); stopping",
                child.index,
                code,
            )
            self.failed = code
            self._stopping.set()
            return
        child.backoff = min(MAX_BACKOFF, child.backoff * 2 or 1.0)
        child.next_start = now + child.backoff
        logger.error(
            "supervisor: worker %d (pid %d) exited with code %d; restarting in %.0fs",
            child.index,
            proc.pid,
            code,
            child.backoff,
        )

    def _stop_all(self) -> int:
        running = [c.proc for c in self.children if c.proc is not None]
        for proc in running:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + KILL_MARGIN
        codes: list[int] = []
        for proc in running:
            try:
                codes.append(proc.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                logger.error("supervisor: worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                codes.append(proc.wait())
        # a child still starting when the SIGTERM came dies of it: it had nothing in flight
        if self.failed:
            return self.failed
        failed = [c for c in codes if c not in (0, -signal.SIGTERM)]
        logger.info(
            "supervisor: stopped (%d of %d workers ended cleanly)",
            len(codes) - len(failed),
            len(codes),
        )
        return 0 if not failed else 1

    def _install_signals(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                for child in self.children:
                    if child.proc is not None:
                        _signal(child.proc, signal.SIGKILL)
                os._exit(130)
            logger.info("supervisor: %s, stopping the workers", signal.Signals(signum).name)
            self._stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass
