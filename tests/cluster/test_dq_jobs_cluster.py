"""dq job control with its guard on Redis Cluster: a job_id reservation, Broker.job, the
pause flag and the rate-limit counters all use keys of one hash slot per operation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from brokerq.errors import DuplicateJob
from brokerq.ratelimit import Rate
from brokerq.worker import Worker
from brokerq_beanstalk import BeanstalkBroker
from tests.cluster.conftest import wait_until
from tests.cluster.test_dq_redis_cluster import dq_conf

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def cluster_broker(
    beanstalkd_endpoints: list[str], beanstalk_tube: str, redis_cluster: str, cluster_prefix: str
) -> Iterator[BeanstalkBroker]:
    redis: dict[str, Any] = {"url": redis_cluster, "cluster": True, "prefix": cluster_prefix}
    b = BeanstalkBroker(dq_conf(beanstalkd_endpoints, beanstalk_tube, redis))
    yield b
    b.close()


def test_job_id_pause_and_rate_limit_on_redis_cluster(cluster_broker: BeanstalkBroker) -> None:
    broker = cluster_broker
    producer = broker.producer()
    producer.delay(b"x", 0.5, job_id="c-order-1", unique_for=60)
    with pytest.raises(DuplicateJob, match=r"delayed|pending"):
        producer.delay(b"x", 0.5, job_id="c-order-1")
    broker.pause()
    assert broker.is_paused() and broker.stats()["paused"] == 1
    runs: list[str] = []
    worker = Worker(broker.source, concurrency=2, paused=broker.is_paused)
    thread = threading.Thread(target=worker.consume, args=(lambda m: runs.append(m.id),))
    thread.start()
    try:
        time.sleep(1.5)  # paused: the job, due meanwhile, must wait
        assert runs == []
        broker.resume()
        wait_until(lambda: runs == ["c-order-1"], 20, "the job after resume")
        wait_until(lambda: _state(broker, "c-order-1") == "done", 10, "done")
    finally:
        worker.stop()
        thread.join(30)
    with pytest.raises(DuplicateJob, match="done"):  # unique_for keeps it
        producer.delay(b"x", 0, job_id="c-order-1")
    producer.close()

    limiter = broker.rate_limiter()
    try:
        rate = Rate(2, 60.0)
        key = f"brokerq:rate:{broker.queue}"
        assert limiter.hit(key, rate) == 0.0
        assert limiter.hit(key, rate) == 0.0
        assert 0 < limiter.hit(key, rate) <= 60
        assert limiter.hit(f"{key}:type:other", rate) == 0.0  # its own key, its own slot
    finally:
        limiter.close()


def _state(broker: BeanstalkBroker, job_id: str) -> str | None:
    info = broker.job(job_id)
    return None if info is None else info.state
