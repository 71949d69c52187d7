"""Three ``brokerq schedule run`` processes on one sqlite file: each tick exactly once (issue 12)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokerq.schedule.helpers import assert_each_tick_once
from tests.brokerq.schedule.procs import Lab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL"),
]

SCHEDULES = """\
schedules:
  - name: beat
    every: 1s
    catch_up: all
    json: {kind: beat}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    broker = f"embedded: {{path: '{tmp_path / 'jobs.db'}', poll_interval: 10ms}}\n"
    lab = Lab(tmp_path, broker, SCHEDULES, name="sqlite-sched")
    yield lab
    lab.close()


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill-9"])
def test_three_schedulers_twenty_seconds_each_tick_once(lab: Lab, kill: bool) -> None:
    lab.worker()
    schedulers = [lab.scheduler() for _ in range(3)]
    assert lab.wait_runs(2, timeout=30), [lab.stderr(p) for p in lab.procs]
    start = time.monotonic()
    if kill:
        time.sleep(10)
        lab.kill(schedulers[0])
    time.sleep(20 - (time.monotonic() - start))
    for proc in schedulers[1:]:
        assert lab.stop(proc) == 0, lab.stderr(proc)
    lab.wait_quiet()
    ticks = assert_each_tick_once(lab.counts(), 1.0)
    assert len(ticks) >= 19, ticks
    early = [r for r in lab.runs() if r.lateness < 0]
    assert not early, early
