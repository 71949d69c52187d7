"""kq live workers: the consumer group's members, as the group coordinator describes them."""

from __future__ import annotations

from brokerq_kafka import KafkaBroker
from tests.brokerq.web.cdp import wait_for


def test_group_members_are_the_live_workers(broker: KafkaBroker) -> None:
    assert broker.workers() == []
    broker.heartbeat(None, 1.0)  # type: ignore[arg-type]  # nothing to write on kq
    with broker.source() as source:

        def joined() -> bool:
            source.receive(0.5)
            return bool(broker.workers())

        wait_for(joined, 60, "the consumer to join its group")
        (member,) = broker.workers()
        assert member.host and member.queue.startswith(broker.conf.topic)
        assert member.name  # the consumer's client.id
