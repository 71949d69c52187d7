"""brokerq.testing.running: a worker in a thread, as ``brokerq run`` would run it."""

from __future__ import annotations

import time

from brokerq.embedded import MemoryBroker
from brokerq.message import Message
from brokerq.testing.contract import wait_for
from brokerq.testing.run import running


def test_running_obeys_the_brokers_pause_flag() -> None:
    """A newcomer paused a memory broker, started ``running`` and saw the job run at once."""
    broker = MemoryBroker()
    seen: list[bytes] = []

    def handle(msg: Message) -> None:
        seen.append(msg.value)

    broker.pause()
    broker.producer().push(b"held")
    with running(broker, handle, concurrency=2):
        time.sleep(1.0)  # a paused queue: nothing may start during this second
        assert seen == []
        broker.resume()
        assert wait_for(lambda: seen == [b"held"], timeout=5)
