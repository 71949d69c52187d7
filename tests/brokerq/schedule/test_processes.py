"""Three ``brokerq schedule run`` processes on one sqlite file: each tick exactly once (issue 12)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokerq.schedule.procs import Lab, three_schedulers_twenty_seconds

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
    three_schedulers_twenty_seconds(lab, kill)
