"""The queue page: jobs by state (paged, payloads capped and escaped), pause / resume where
the backend can pause, revoke on delayed jobs where it has them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from brokerq.broker import Capabilities
from brokerq.embedded import EmbeddedConf, MemoryBroker
from brokerq.web.queues import Queue
from tests.brokerq.web.conftest import client_for, fill


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_jobs_by_state_are_listed_escaped_and_paged(
    kind: str, make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config(kind))
    with q.broker.producer() as p:
        p.push(b"<script>alert(1)</script>" + b"x" * 500)
        for i in range(4):
            p.push(f"job-{i}")
    with q.broker.delay_producer() as d:
        later = d.delay(b"later", 3600)
    client = client_for([q], page_size=3, preview_bytes=40)
    page = client.get("/q/jobs").text
    assert page.count("data-job=") == 3 and "next page" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "+485 B" in page  # 525 bytes, 40 shown
    second = client.get("/q/jobs", params={"state": "pending", "jpage": "1"}).text
    assert second.count("data-job=") == 2 and "job-3" in second
    delayed = client.get("/q/jobs", params={"state": "delayed"}).text
    assert f'data-job="{later}"' in delayed and "Revoke" not in delayed  # read-only
    running = client.get("/q/jobs", params={"state": "running"}).text
    assert "No running jobs." in running


def test_revoke_a_delayed_job_from_its_row(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("sqlite"))
    with q.broker.delay_producer() as d:
        later = d.delay(b"later", 3600)
    client = client_for([q], allow_actions=True)
    page = client.get("/q/jobs", params={"state": "delayed"}).text
    assert f'name="job_id" value="{later}"' in page
    r = client.post(
        "/q/jobs/do/revoke",
        data={"job_id": later, "csrf": csrf_of(page), "next": "/q/jobs?state=delayed"},
    )
    assert r.status_code == 303 and "revoked" in client.get(r.headers["location"]).text
    assert q.broker.jobs("delayed") == []


@pytest.mark.integration
def test_kafka_pending_records_are_not_listable(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("kq"))
    dead_id = fill(q.broker, pending=1)
    page = client_for([q]).get("/q/jobs").text
    assert "not listable on Kafka" in page
    (dead,) = q.broker.jobs("dead")  # dead letters are listable
    assert dead.id == dead_id and dead.state == "dead" and dead.last_error
    assert q.broker.jobs("dead", 10, 1) == []


class PausableMemory(MemoryBroker):
    """A memory broker with the pause contract (the dashboard is built against it)."""

    capabilities: ClassVar[Capabilities] = Capabilities(delay=True, pause=True)
    paused = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def is_paused(self) -> bool:
        return self.paused


def test_pause_and_resume_from_the_overview(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("memory"))
    conf = q.config.broker_config
    assert isinstance(conf, EmbeddedConf)
    q.broker = PausableMemory(conf)
    read_only = client_for([q]).get("/").text
    assert 'data-action="pause"' not in read_only and ">active<" in read_only
    client = client_for([q], allow_actions=True)
    overview = client.get("/").text
    assert 'data-action="pause"' in overview
    assert client.post("/q/jobs/do/pause", data={"next": "/"}).status_code == 403  # no CSRF
    r = client.post("/q/jobs/do/pause", data={"csrf": csrf_of(overview), "next": "/"})
    assert r.status_code == 303 and q.broker.is_paused()
    overview = client.get("/").text
    assert ">paused<" in overview and 'data-action="resume"' in overview
    client.post("/q/jobs/do/resume", data={"csrf": csrf_of(overview), "next": "/"})
    assert not q.broker.is_paused()


class NoPause(MemoryBroker):
    """A backend whose capabilities say it cannot pause."""

    capabilities: ClassVar[Capabilities] = Capabilities(delay=True)


def test_no_pause_button_where_the_backend_cannot_pause(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("memory"))
    conf = q.config.broker_config
    assert isinstance(conf, EmbeddedConf)
    q.broker = NoPause(conf)
    html = client_for([q], allow_actions=True).get("/").text
    assert 'data-action="pause"' not in html and 'data-action="resume"' not in html
