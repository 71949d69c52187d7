"""dq with its guard on Redis Cluster (3 masters + 3 replicas) and on Sentinel: the contract
suites, and a master failover (kill -9) while jobs are consumed.

What may run twice: Redis replicates asynchronously, so a done mark written on a master in
the last moments before it is killed can be missing on the replica that takes over; a copy of
such a job still on another beanstalkd node then runs again. That is the documented crash
window (README, "dq on Redis Cluster and Sentinel"); the failover tests allow duplicates only
for jobs whose first run finished within it, and none anywhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brokerq.message import Message
from brokerq_beanstalk import BeanstalkBroker, DqConf
from tests.cluster.conftest import SENTINEL_MASTER, sentinel_master, wait_until
from tests.contract import DelayContract, ProducerContract, running
from tests.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# jobs whose first run finished this long before a master was killed may run again
# (replication lag bound; the replica is promoted 2-4 s later, cluster-node-timeout 2 s)
CRASH_WINDOW = 1.0


def dq_conf(endpoints: list[str], tube: str, redis: dict[str, Any], **over: Any) -> DqConf:
    data: dict[str, Any] = {
        "beanstalks": [{"endpoint": e, "tube": tube} for e in endpoints],
        "redis": redis,
        "claim_ttl": "3s",
        "concurrency": 4,
    }
    data.update(over)
    return DqConf.model_validate(data)


@pytest.fixture
def cluster_redis(redis_cluster: str, cluster_prefix: str) -> dict[str, Any]:
    return {"url": redis_cluster, "cluster": True, "prefix": cluster_prefix}


@pytest.fixture
def sentinel_redis(sentinels: list[str], unique_name: str) -> dict[str, Any]:
    return {
        "sentinel": {"master": SENTINEL_MASTER, "nodes": sentinels},
        "prefix": f"{unique_name}:",
    }


class TestClusterContract(ProducerContract, DelayContract):
    @pytest.fixture
    def broker(
        self, beanstalkd_endpoints: list[str], beanstalk_tube: str, cluster_redis: dict[str, Any]
    ) -> Iterator[BeanstalkBroker]:
        b = BeanstalkBroker(dq_conf(beanstalkd_endpoints, beanstalk_tube, cluster_redis))
        yield b
        b.close()


class TestSentinelContract(ProducerContract, DelayContract):
    @pytest.fixture
    def broker(
        self, beanstalkd_endpoints: list[str], beanstalk_tube: str, sentinel_redis: dict[str, Any]
    ) -> Iterator[BeanstalkBroker]:
        b = BeanstalkBroker(dq_conf(beanstalkd_endpoints, beanstalk_tube, sentinel_redis))
        yield b
        b.close()


class Timeline:
    """A handler recording (value, start, end) of every run."""

    def __init__(self) -> None:
        self.runs: list[tuple[bytes, float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        start = time.time()
        time.sleep(0.002)
        with self.lock:
            self.runs.append((msg.value, start, time.time()))

    def count(self) -> int:
        with self.lock:
            return len({v for v, _, _ in self.runs})


def failover_run(
    broker: BeanstalkBroker,
    n: int,
    kill: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Push n jobs, consume them, kill a Redis master a third of the way; check the counts."""
    caplog.set_level(logging.INFO)
    with broker.delay_producer() as producer:
        for i in range(n):
            producer.delay(str(i), 0.5)
    rec = Timeline()
    with running(broker, rec, concurrency=8):
        wait_until(lambda: rec.count() >= n // 3, 120, "no progress before the kill")
        killed_at = time.time()
        kill()
        wait_until(lambda: rec.count() >= n, 180, f"only {rec.count()} of {n} jobs ran")
        time.sleep(3.0)  # late duplicates would show up here
    runs = Counter(v for v, _, _ in rec.runs)
    missing = n - len(runs)
    first_end: dict[bytes, float] = {}
    for v, _, end in rec.runs:
        first_end.setdefault(v, end)
    twice = [v for v, c in runs.items() if c > 1]
    outside = [v for v in twice if not killed_at - CRASH_WINDOW <= first_end[v] <= killed_at + 30]
    print(f"\njobs={n} ran={len(rec.runs)} twice={len(twice)} outside the crash window={outside}")
    assert missing == 0, f"{missing} jobs lost"
    assert outside == [], f"jobs run twice outside the crash window: {outside[:10]}"
    crossslot = [r.getMessage() for r in caplog.records if "CROSSSLOT" in r.getMessage()]
    assert crossslot == [], crossslot[:3]


def cluster_master_of(key_slot_owner_port: int = 17000) -> str:
    """The service name of a current master of the Redis Cluster (one that owns slots)."""
    import redis

    client = redis.Redis(port=key_slot_owner_port)
    try:
        nodes = client.cluster("nodes")
    finally:
        client.close()
    for addr, info in nodes.items():
        if "master" in info["flags"] and "fail" not in info["flags"] and info["slots"]:
            port = int(addr.rsplit(":", 1)[1].split("@")[0])
            return f"redis-c{port - 17000}"
    raise AssertionError(f"no master in {nodes}")


def cluster_ok() -> bool:
    import redis

    for port in range(17000, 17006):
        try:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
        except redis.ConnectionError:
            continue  # the killed node
    return True


@pytest.mark.slow
def test_cluster_master_failover_loses_nothing(
    beanstalkd_endpoints: list[str],
    beanstalk_tube: str,
    cluster_redis: dict[str, Any],
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = BeanstalkBroker(dq_conf(beanstalkd_endpoints, beanstalk_tube, cluster_redis))
    victim = cluster_master_of()
    try:
        failover_run(broker, 3000, lambda: services.kill(victim), caplog)
    finally:
        broker.close()
        services.restart(victim)  # it rejoins as a replica of the promoted node
        wait_until(cluster_ok, 60, "redis cluster not ok after the restart")


@pytest.mark.slow
def test_sentinel_master_failover_loses_nothing(
    beanstalkd_endpoints: list[str],
    beanstalk_tube: str,
    sentinel_redis: dict[str, Any],
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = BeanstalkBroker(dq_conf(beanstalkd_endpoints, beanstalk_tube, sentinel_redis))
    _, port = sentinel_master()
    victim = f"redis-s{port - 16380}"
    try:
        failover_run(broker, 3000, lambda: services.kill(victim), caplog)
        assert sentinel_master()[1] != port, "sentinel did not fail over"
    finally:
        broker.close()
        services.restart(victim)  # Sentinel turns it into a replica of the new master
