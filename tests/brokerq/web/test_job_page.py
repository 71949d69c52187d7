"""The job page renders what ``Broker.job`` says: state, times, details (dq copies per node,
guard state), masked headers and an escaped payload; NotSupported is a line."""

from __future__ import annotations

import time
from typing import Any

from brokerq.broker import Broker, JobInfo
from brokerq.config import loads
from brokerq.embedded import MemoryBroker
from brokerq.message import Message
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
