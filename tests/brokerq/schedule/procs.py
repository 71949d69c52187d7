"""Real ``brokerq`` processes for scheduler tests on any backend (sqlite, dq, kq).

``Lab`` writes a config (the broker section is given by the test), starts scheduler-only
processes (``brokerq schedule run``) and one worker (``brokerq run --no-schedules``) whose
handler (fire_handler.record) writes a line per message, kills and stops them, and reads back
which ticks ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from brokerq.schedule import parse_fire_time
from tests.brokerq.schedule.helpers import assert_each_tick_once
from tests.contract import wait_for

ROOT = Path(__file__).resolve().parents[3]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))


@dataclass(frozen=True)
class Run:
    fire_time: datetime
    schedule: str
    received: float
    pid: int
    id: str

    @property
    def lateness(self) -> float:
        """Seconds from the tick to the handler starting (negative = early)."""
        return self.received - self.fire_time.timestamp()


class Lab:
    def __init__(self, tmp_path: Path, broker_yaml: str, schedules_yaml: str, name: str) -> None:
        self.dir = tmp_path
        self.fires = tmp_path / "fires.txt"
        self.config = tmp_path / "sched.yaml"
        self.config.write_text(
            f"name: {name}\n"
            "handler: tests.brokerq.schedule.fire_handler:record\n"
            "log_level: INFO\n"
            f"{broker_yaml.rstrip()}\n"
            f"{schedules_yaml.rstrip()}\n"
        )
        self.env = dict(os.environ)
        self.env["BQ_FIRES"] = str(self.fires)
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        err = open(self.dir / f"stderr-{n}.txt", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [BROKERQ, *args, str(self.config)], cwd=ROOT, env=self.env, stderr=err
        )
        err.close()
        self.procs.append(proc)
        return proc

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self._start("schedule", "run")

    def worker(self) -> subprocess.Popen[bytes]:
        return self._start("run", "--no-schedules")

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"stderr-{self.procs.index(proc)}.txt").read_text(errors="replace")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def runs(self) -> list[Run]:
        try:
            lines = self.fires.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            fire, schedule, received, pid, msg_id = line.split(" ")
            out.append(Run(parse_fire_time(fire), schedule, float(received), int(pid), msg_id))
        return out

    def counts(self) -> Counter[datetime]:
        return Counter(r.fire_time for r in self.runs())

    def wait_runs(self, n: int, timeout: float = 60) -> bool:
        return wait_for(lambda: len(self.runs()) >= n, timeout, interval=0.1)

    def wait_quiet(self, seconds: float = 1.5, timeout: float = 30) -> None:
        """Wait until no new run was recorded for ``seconds`` (the queue is drained)."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = len(self.runs())
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
            time.sleep(0.1)


def three_schedulers_twenty_seconds(lab: Lab, kill: bool) -> None:
    """One worker, three scheduler processes of an every-second schedule for 20 s (with
    ``kill``: the first SIGKILLed after 10 s): every tick ran once, none early, >= 19 ticks."""
    lab.worker()
    schedulers = [lab.scheduler() for _ in range(3)]
    assert lab.wait_runs(2, timeout=30), [lab.stderr(p) for p in lab.procs]
    start = time.monotonic()
    if kill:
        time.sleep(10)
        lab.kill(schedulers[0])
    time.sleep(20 - (time.monotonic() - start))
    for proc in schedulers:  # every one still running (one left firing keeps the queue busy:
        if proc.poll() is None:  # wait_quiet would only end at its timeout)
            assert lab.stop(proc) == 0, lab.stderr(proc)
    lab.wait_quiet()
    ticks = assert_each_tick_once(lab.counts(), 1.0)
    assert len(ticks) >= 19, ticks
    early = [r for r in lab.runs() if r.lateness < 0]
    assert not early, early
