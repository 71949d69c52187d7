"""The schedules page, drawn when the scheduler (brokerq.schedule) is installed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from brokerq.web.queues import Queue
from brokerq.web.views import has_schedules
from tests.brokerq.web.conftest import client_for

pytestmark = pytest.mark.skipif(not has_schedules(), reason="brokerq.schedule not installed")


def test_schedules_list_and_fire_now(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    path = make_config("sqlite", name="sched")
    path.write_text(
        path.read_text()
        + "schedules:\n  - {name: nightly, cron: '0 2 * * *', timezone: Europe/Berlin, value: x}\n"
    )
    (q,) = queues_for(path)
    client = client_for([q], allow_actions=True)
    page = client.get("/schedules")
    assert page.status_code == 200
    assert "nightly" in page.text and "0 2 * * *" in page.text and "Europe/Berlin" in page.text
    assert "CET" in page.text or "CEST" in page.text  # next fires in the schedule's zone
    assert "01:00:00 UTC" in page.text or "00:00:00 UTC" in page.text  # and in UTC
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    r = client.post("/schedules/sched/nightly/fire", data={"csrf": token.group(1)})
    assert r.status_code == 303 and "fired+nightly" in r.headers["location"]
    assert q.broker.stats()["pending"] == 1
    read_only = client_for([q])
    assert read_only.post("/schedules/sched/nightly/fire", data={"csrf": "x"}).status_code == 403
    assert 'data-action="fire"' not in read_only.get("/schedules").text
