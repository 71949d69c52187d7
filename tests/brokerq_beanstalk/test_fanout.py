"""``delay`` returns once ``min_written`` nodes acked (brokerq_beanstalk.fanout): the slowest
node's answer is read by a later call and its copy still recorded; a node that stops
answering is failed after ``timeout`` without failing any job. Two real nodes and a third,
scripted one whose answers the test holds back."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from brokerq_beanstalk import Beanstalk, BeanstalkBroker, Producer
from brokerq_beanstalk.guard import Guard
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.contract import wait_for

pytestmark = pytest.mark.integration


class HeldNode:
    """A beanstalkd stand-in on loopback: answers ``use`` at once, ``put`` only once
    ``release`` is set (never when it stays unset), ``delete`` with DELETED."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.release = threading.Event()
        self.stop = threading.Event()
        self.puts = 0
        self.answered = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        buf = b""
        waiting = 0
        while not self.stop.is_set():
            if waiting and self.release.is_set():
                first = self.answered + 1
                conn.sendall(b"".join(b"INSERTED %d\r\n" % (first + i) for i in range(waiting)))
                self.answered += waiting
                waiting = 0
            if b"\r\n" not in buf:
                if not select.select([conn], [], [], 0.05)[0]:
                    continue
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                continue
            line, _, rest = buf.partition(b"\r\n")
            words = line.split()
            if words[0] == b"put":
                size = int(words[4]) + 2
                if len(rest) < size:  # the body is still on its way
                    buf += conn.recv(65536)
                    continue
                rest = rest[size:]
                self.puts += 1
                waiting += 1
            elif words[0] == b"use":
                conn.sendall(b"USING " + words[1] + b"\r\n")
            elif words[0] == b"delete":
                conn.sendall(b"DELETED\r\n")
            buf = rest
        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def held() -> Iterator[HeldNode]:
    node = HeldNode()
    yield node
    node.close()


def test_delay_returns_on_two_acks_and_records_the_late_copy(
    make_conf: MakeConf, beanstalkd_endpoints: list[str], redis_url: str, held: HeldNode
) -> None:
    conf = make_conf()
    tube = conf.beanstalks[0].tube
    nodes = [Beanstalk(endpoint=e, tube=tube) for e in [*beanstalkd_endpoints[:2], held.endpoint]]
    guard = Guard(redis.Redis.from_url(redis_url), conf.redis.prefix)
    with Producer(nodes, guard=guard, timeout=30.0) as producer:
        job = producer.delay(b"x", 30)  # the held node has not answered: two acks were enough
        assert held.answered == 0
        assert wait_for(lambda: held.puts == 1)
        ids = producer.delay_many([(b"y", 30), (b"z", 30)])
        assert all(isinstance(i, str) for i in ids) and held.answered == 0
        assert wait_for(lambda: held.puts == 3)
        held.release.set()
        copies = producer.copies(job)  # reads the answers still owed
        assert sorted(c.rpartition("/")[0] for c in copies) == sorted(
            [*beanstalkd_endpoints[:2], held.endpoint]
        )
        for i in ids:
            assert isinstance(i, str) and len(producer.copies(i)) == 3
    record = redis.Redis.from_url(redis_url).get(guard.key(job, "copies"))
    assert record is not None and held.endpoint.encode() in record
    with BeanstalkBroker(conf).delay_producer() as other:  # revoke by id from elsewhere
        assert other.revoke(job) is True


def test_a_node_that_stops_answering_is_failed_without_failing_jobs(
    make_conf: MakeConf, beanstalkd_endpoints: list[str], held: HeldNode
) -> None:
    tube = make_conf().beanstalks[0].tube
    nodes = [Beanstalk(endpoint=e, tube=tube) for e in [*beanstalkd_endpoints[:2], held.endpoint]]
    ids: list[str] = []
    with Producer(nodes, timeout=0.5) as producer:
        down = producer._nodes[held.endpoint]

        def one_more() -> bool:
            ids.append(producer.delay(b"x", 30))
            return down.owes == 0 and down.down_until > 0

        assert wait_for(one_more, timeout=20), "the silent node was never given up"
        for job_id in ids:
            assert len(producer.copies(job_id)) == 2
