"""A worker started before its topic exists misses nothing pushed after it started
(issue 11 #1), and ``check`` says the topic is missing and whether it will be created."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from brokerq.message import Message
from brokerq.testing.servers import delete_topics
from brokerq_kafka import KafkaBroker, KqConf, Pusher, Queue
from tests.brokerq_kafka.conftest import delete_topics_with_prefix
from tests.contract import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def late_conf(make_conf: Callable[..., KqConf], kafka_bootstrap: str) -> Iterator[KqConf]:
    conf = make_conf()
    late = conf.model_copy(update={"topic": f"{conf.topic}-late", "offset": "last"})
    yield late
    delete_topics(kafka_bootstrap, [late.topic])
    delete_topics_with_prefix(kafka_bootstrap, f"{late.topic}.retry.")


def test_topic_created_after_the_worker_started_is_read_from_its_start(
    late_conf: KqConf,
) -> None:
    with KafkaBroker(late_conf) as broker:
        problem = broker.missing_topic()
        assert problem is not None and "does not exist yet" in problem
        assert "creates it on the first push" in problem  # the shared broker auto-creates
        broker.check()  # a warning, not a failure: the first push will create it
    seen: list[bytes] = []
    lock = threading.Lock()

    def handle(msg: Message) -> None:
        with lock:
            seen.append(msg.value)

    queue = Queue(late_conf, handle)
    thread = threading.Thread(target=queue.start, daemon=True)
    thread.start()
    try:
        source_up = f"{late_conf.topic}.retry.1"  # the worker made its retry topics: it runs
        with KafkaBroker(late_conf) as broker:
            assert wait_for(
                lambda: source_up in broker._client().list_topics(timeout=5).topics, timeout=30
            )
        with Pusher(late_conf.brokers, late_conf.topic) as pusher:  # auto-creates the topic
            for i in range(5):
                pusher.push(f"m{i}")
        assert wait_for(lambda: len(seen) == 5, timeout=60), f"{len(seen)} of 5 seen"
    finally:
        queue.stop()
        thread.join(30)
    assert sorted(seen) == [f"m{i}".encode() for i in range(5)]
    with KafkaBroker(late_conf) as broker:
        assert broker.missing_topic() is None
