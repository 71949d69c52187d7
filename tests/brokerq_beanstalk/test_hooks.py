"""The dq producer runs the broker's push hooks (tracing, metrics), and claims are never
renewed past a delivery's deadline (time limit + grace)."""

from __future__ import annotations

import time

import pytest
import redis

from brokerq.broker import Delivery
from brokerq.errors import MessageTooLarge
from brokerq.message import Message
from brokerq.middleware import Middleware
from brokerq_beanstalk import BeanstalkBroker
from brokerq_beanstalk.claims import Claims
from brokerq_beanstalk.guard import Guard
from tests.contract import Recorder, running, wait_for

pytestmark = pytest.mark.integration


class Stamp(Middleware):
    def __init__(self) -> None:
        self.pushed: list[tuple[str, BaseException | None]] = []

    def before_push(self, queue: str, headers: dict[str, str]) -> None:
        headers["traceparent"] = "00-abc-def-01"

    def after_push(self, queue: str, error: BaseException | None) -> None:
        self.pushed.append((queue, error))


def test_push_hooks_run_for_push_delay_and_failures(broker: BeanstalkBroker) -> None:
    stamp = Stamp()
    broker.add_middleware(stamp)
    tube = broker.conf.beanstalks[0].tube
    with broker.producer() as producer:
        producer.push(b"now", headers={"a": "1"})
        producer.delay(b"soon", 0.2, priority=3)
        with pytest.raises(MessageTooLarge):
            producer.push(b"x" * 70_000)
    assert [q for q, _ in stamp.pushed] == [tube] * 3
    assert [e is None for _, e in stamp.pushed] == [True, True, False]
    rec = Recorder()
    with running(broker, rec):
        assert wait_for(lambda: len(rec.seen) == 2)
    assert all(m.headers["traceparent"] == "00-abc-def-01" for m in rec.seen)
    assert {m.value: m.headers.get("a") for m in rec.seen} == {b"now": "1", b"soon": None}


def test_no_claim_is_renewed_past_the_deadline(redis_url: str, redis_prefix: str) -> None:
    guard = Guard(redis.Redis.from_url(redis_url), redis_prefix, claim_ttl=30.0)
    claims = Claims(guard, 30.0, lambda: None)
    live = Delivery(Message(b"a", id="live"), None, deadline=time.time() + 60)
    over = Delivery(Message(b"b", id="over"), None, deadline=time.time() - 1)
    for d in (live, over):
        assert guard.claim(d.message.id, f"t-{d.message.id}", ttl=2.0)
        claims.add(f"t-{d.message.id}", d)
    claims.renew()
    ttl = {i: guard.client.pttl(guard.key(i, "claim")) for i in ("live", "over")}
    assert ttl["live"] > 2000  # renewed to claim_ttl
    assert 0 < ttl["over"] <= 2000  # left to run out
    guard.close()
