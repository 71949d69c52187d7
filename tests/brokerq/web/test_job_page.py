"""The job page renders what ``Broker.job`` says: state, times, details (dq copies per node,
guard state), masked headers and an escaped payload; NotSupported is a line."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokerq.broker import Broker, JobInfo
from brokerq.config import loads
from brokerq.embedded import MemoryBroker
from brokerq.message import Message
from brokerq.outcome import Failure
from brokerq.testing.contract import wait_for
from brokerq.web.queues import Queue
from tests.brokerq.web.conftest import client_for


class LookupBroker(MemoryBroker):
    """A memory broker that knows one job, the way a dq broker would describe it."""

    def job(self, job_id: str) -> JobInfo | None:
        if job_id != "order-42":
            return None
        now = time.time()
        return JobInfo(
            id="order-42",
            state="delayed",
            attempt=2,
            last_error="TimeoutError: <smtp> timed out",
            due=now + 90,
            created_at=now - 30,
            message=Message(
                value=b"<script>alert(1)</script>",
                headers={"x-password": "hunter2", "brokerq-type": "email.welcome"},
                id="order-42",
            ),
            details={
                "copies": {"127.0.0.1:11300": "delayed", "127.0.0.1:11301": "delayed"},
                "guard": "claim free, not done",
            },
        )


def queue() -> Queue:
    cfg = loads("name: jobs\nhandler: a:b\nembedded: {backend: memory}\n")
    broker: Any = LookupBroker()
    return Queue("jobs", "<test>", cfg, broker)


def test_a_known_job_shows_its_state_details_and_escaped_payload() -> None:
    q = queue()
    html = client_for([q]).get("/job", params={"id": "order-42"}).text
    assert 'class="badge state-delayed">delayed<' in html
    assert "&lt;smtp&gt; timed out" in html and "<smtp>" not in html
    assert "127.0.0.1:11301" in html and "claim free, not done" in html
    assert "hunter2" not in html and "email.welcome" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert " UTC" in html  # due and created times


class NoLookups(MemoryBroker):
    """A backend without ``job`` (the contract's default: NotSupported)."""

    job = Broker.job


def test_an_unknown_job_and_a_backend_without_lookups() -> None:
    q = queue()
    cfg = loads("name: plain\nhandler: a:b\nembedded: {backend: memory}\n")
    plain = Queue("plain", "<test>", cfg, NoLookups())
    html = client_for([q, plain]).get("/job", params={"id": "nope"}).text
    assert "jobs: no job <code>nope</code> known." in html
    assert "job lookup: not supported here" in html


def test_sqlite_job_states_delayed_retrying_running(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("sqlite"))
    with q.broker.delay_producer() as d:
        later = d.delay(b"later", 3600)
    with q.broker.producer() as p:
        p.push(b"now", job_id="now-1")
    client = client_for([q])

    def state_line(job_id: str) -> str:
        html = client.get("/job", params={"id": job_id}).text
        match = re.search(r'<td class="jobstate">(.*?)</td>', html)
        assert match, html
        return match.group(1)

    assert re.match(r"delayed until .* UTC \(in 59m\d\ds\)", state_line(later))
    with q.broker.source() as source:
        delivery = source.receive(5)
        assert delivery is not None and delivery.message.id == "now-1"
        html = client.get("/job", params={"id": "now-1"}).text
        assert state_line("now-1") == "running"
        lease = re.search(r'data-detail="lease_until"><th>lease_until</th><td><code>(.*?)<', html)
        assert lease and lease.group(1).endswith(" UTC")  # a time, not a float
        source.retry(delivery, 30, Failure("ValueError", "try <later>"))
    assert re.match(r"retrying at .* UTC \(in \d+s\)", state_line("now-1"))
    assert "try &lt;later&gt;" in client.get("/job", params={"id": "now-1"}).text


@pytest.mark.integration
def test_dq_job_shows_copies_per_node_and_guard(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("dq"))
    with q.broker.delay_producer() as d:
        job_id = d.delay(b"later", 3600)
    client = client_for([q])
    replicas = min(3, len(q.config.broker_config.beanstalks))  # type: ignore[attr-defined]

    def copies() -> list[str]:  # beanstalkd state of each copy, one row per node
        html = client.get("/job", params={"id": job_id}).text
        details = html.split("<h3>Details</h3>", 1)[-1]
        return re.findall(r"127\.0\.0\.1:\d+[^<]*</th><td><code>([^<]*)<", details)

    # a delay returns once min_written nodes answered: the last copy may land a moment later
    assert wait_for(lambda: len(copies()) == replicas, 30, interval=0.2), copies()
    assert all(c.endswith("delayed") for c in copies())
    html = client.get("/job", params={"id": job_id}).text
    assert 'class="badge state-delayed">delayed<' in html
    assert re.search(r"claimed</th><td><code>no</code>", html)  # the Redis guard's state
