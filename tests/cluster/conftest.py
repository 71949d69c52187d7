"""Fixtures for the cluster topology started by ``scripts/services up --cluster``.

Kafka: 3 KRaft brokers (PLAINTEXT 19092-19094, SASL_SSL/SCRAM-SHA-512 19392-19394, SASL_SSL
with a wrong-host certificate 19492-19494). Redis Cluster 17000-17005 (3 masters + 3
replicas), Sentinel 26380-26382 over 16380/16381 (master name "brokerq"), Redis TLS + ACL
on 16390 (and 16391 with the wrong-host certificate). Certificates and passwords live in
``$BROKERQ_SERVICES_DIR/secure`` (tests read passwords from there, like ``password_file``).

dq tests here also use the three beanstalkd of the single topology (``scripts/services up``).
Like tests/services.py: a missing service skips, or fails with ``CI=true`` /
``BROKERQ_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brokerq.testing.servers import probe
from tests.services import REPO_ROOT, _unavailable

KAFKA_PORTS = (19092, 19093, 19094)
KAFKA_CLUSTER = ",".join(f"127.0.0.1:{p}" for p in KAFKA_PORTS)
KAFKA_SECURE = ",".join(f"127.0.0.1:{p + 300}" for p in KAFKA_PORTS)
KAFKA_BADHOST = ",".join(f"127.0.0.1:{p + 400}" for p in KAFKA_PORTS)
REDIS_CLUSTER_URL = "redis://127.0.0.1:17000"
SENTINELS = ["127.0.0.1:26380", "127.0.0.1:26381", "127.0.0.1:26382"]
SENTINEL_MASTER = "brokerq"
REDIS_TLS_URL = "rediss://127.0.0.1:16390/0"
REDIS_BADHOST_URL = "rediss://127.0.0.1:16391/0"
SECURE_USER = "brokerq"


def services_dir() -> Path:
    return Path(os.environ.get("BROKERQ_SERVICES_DIR", REPO_ROOT / ".services"))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` (exceptions count as not yet) until truthy; raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the cluster may be failing over
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} after {timeout}s (last error: {last})")


# --------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_cluster() -> str:
    """The PLAINTEXT bootstrap of the 3-broker cluster, every broker answering."""
    down = [p for p in KAFKA_PORTS if not probe("kafka", "127.0.0.1", p)]
    if down:
        _unavailable(f"kafka cluster brokers on ports {down}")
    return KAFKA_CLUSTER


_ADMIN: list[Any] = []


def admin() -> Any:
    """One AdminClient for the cluster, kept alive (its futures die with it)."""
    from confluent_kafka.admin import AdminClient

    if not _ADMIN:
        _ADMIN.append(AdminClient({"bootstrap.servers": KAFKA_CLUSTER}))
    return _ADMIN[0]


def topic_state(topic: str) -> dict[int, tuple[int, list[int]]]:
    """partition → (leader broker id, in-sync replica ids)."""
    md = admin().list_topics(topic=topic, timeout=10).topics[topic]
    return {p: (m.leader, list(m.isrs)) for p, m in md.partitions.items()}


def wait_fully_replicated(topic: str, partitions: int, timeout: float = 90) -> None:
    """Every partition has a leader and 3 in-sync replicas, and 3 brokers are registered."""

    def ok() -> bool:
        state = topic_state(topic)
        brokers = admin().list_topics(timeout=10).brokers
        return (
            len(brokers) == 3
            and len(state) == partitions
            and all(leader >= 0 and len(isr) == 3 for leader, isr in state.values())
        )

    wait_until(ok, timeout, f"topic {topic} not fully replicated")


@pytest.fixture
def cluster_topic(kafka_cluster: str, unique_name: str) -> Iterator[str]:
    """A fresh 3-partition topic with replication factor 3 (and its .dlq), deleted after."""
    from confluent_kafka.cimpl import NewTopic

    names = [unique_name, f"{unique_name}.dlq"]
    fs = admin().create_topics([NewTopic(n, num_partitions=3, replication_factor=3) for n in names])
    for f in fs.values():
        f.result(timeout=30)
    wait_fully_replicated(unique_name, 3)
    try:
        yield unique_name
    finally:
        try:
            for f in admin().delete_topics(names, operation_timeout=10).values():
                f.result(timeout=30)
        except Exception:  # best effort
            pass


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_cluster() -> str:
    """The seed URL of the Redis Cluster, checked to be ``cluster_state:ok``."""
    import redis
    from redis.cluster import RedisCluster

    try:
        client = RedisCluster.from_url(REDIS_CLUSTER_URL, socket_connect_timeout=2)
        ok = client.cluster_info().get("cluster_state") == "ok"
        client.close()
    except redis.RedisError:
        ok = False
    if not ok:
        _unavailable(f"redis cluster at {REDIS_CLUSTER_URL}")
    return REDIS_CLUSTER_URL


@pytest.fixture(scope="session")
def sentinels() -> list[str]:
    """The three sentinels, each knowing the master ``brokerq``."""
    down = [s for s in SENTINELS if not probe("redis", "127.0.0.1", int(s.rsplit(":", 1)[1]))]
    if down:
        _unavailable(f"redis sentinels at {', '.join(down)}")
    return SENTINELS


def sentinel_master() -> tuple[str, int]:
    from redis.sentinel import Sentinel

    nodes = [("127.0.0.1", int(s.rsplit(":", 1)[1])) for s in SENTINELS]
    sentinel = Sentinel(nodes, socket_timeout=2)  # type: ignore[no-untyped-call]
    host, port = sentinel.discover_master(SENTINEL_MASTER)  # type: ignore[no-untyped-call]
    return str(host), int(port)


@pytest.fixture(scope="session")
def secure_dir() -> Path:
    """Where the scripts keep the CA, certificates and passwords of the secure listeners."""
    d = services_dir() / "secure"
    if not (d / ".complete").exists():
        _unavailable(f"the secure listener set ({d} has no certificates)")
    down = [p for p in (19392, 19393, 19394) if not probe("kafka", "127.0.0.1", p - 300)]
    if down:
        _unavailable(f"kafka cluster brokers {down}")
    return d


@pytest.fixture
def cluster_prefix(unique_name: str) -> Iterator[str]:
    """A Redis key prefix; keys with it are deleted from the cluster afterwards."""
    prefix = f"{unique_name}:"
    yield prefix
    import redis
    from redis.cluster import RedisCluster

    try:
        client = RedisCluster.from_url(REDIS_CLUSTER_URL)
        for key in list(client.scan_iter(match=f"{unique_name}*", count=1000)):
            client.delete(key)
        client.close()
    except redis.RedisError:  # best effort
        pass
