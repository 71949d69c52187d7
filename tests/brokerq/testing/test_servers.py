"""brokerq.testing.servers: parsing and figures without servers; probes and clean-up against
the real services (fixtures in tests/services.py)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys

import pytest

from brokerq.testing import servers
from brokerq.testing.contract import wait_for
from brokerq.testing.servers import (
    RawBeanstalk,
    percentile,
    probe,
    redis_address,
    split_endpoint,
)


def test_split_endpoint() -> None:
    assert split_endpoint("127.0.0.1:11300") == ("127.0.0.1", 11300)
    assert split_endpoint(":9092") == ("127.0.0.1", 9092)
    assert split_endpoint("[::1]:6379") == ("::1", 6379)
    for bad in ("nohost", "host:", "host:x", "host:0", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            split_endpoint(bad)


def test_redis_address() -> None:
    assert redis_address("redis://10.0.0.5:6380/2") == ("10.0.0.5", 6380)
    assert redis_address("redis:///0") == ("127.0.0.1", 6379)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.01) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_endpoints_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERQ_BEANSTALKD_ENDPOINTS", " a:1 , b:2 ")
    monkeypatch.setenv("BROKERQ_REDIS_URL", "redis://r:1/0")
    monkeypatch.setenv("BROKERQ_KAFKA_BOOTSTRAP", "k:1")
    assert servers.beanstalkd_endpoints() == ["a:1", "b:2"]
    assert servers.redis_url() == "redis://r:1/0"
    assert servers.kafka_bootstrap() == "k:1"


def test_probe_is_false_on_a_closed_port_and_rejects_unknown_kinds() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert not probe("redis", "127.0.0.1", port, timeout=0.5)
        assert not servers.port_open("127.0.0.1", port, timeout=0.5)
    with pytest.raises(ValueError, match="unknown service kind"):
        probe("mysql", "127.0.0.1", 1)


@pytest.mark.integration
def test_probes_answer_and_the_script_form_exits_0(
    beanstalkd_endpoints: list[str], redis_url: str, kafka_bootstrap: str
) -> None:
    kafka = split_endpoint(kafka_bootstrap.split(",")[0])
    assert probe("beanstalkd", *split_endpoint(beanstalkd_endpoints[0]))
    assert probe("redis", *redis_address(redis_url))
    assert probe("kafka", *kafka)
    assert not probe("redis", *kafka, timeout=2)  # Kafka does not answer PING
    script = [sys.executable, servers.__file__, "probe", "kafka", str(kafka[1])]
    assert subprocess.run(script, timeout=30).returncode == (0 if kafka[0] == "127.0.0.1" else 1)
    assert subprocess.run([sys.executable, servers.__file__, "nope"], timeout=30).returncode == 2


@pytest.mark.integration
def test_drain_tube_deletes_ready_delayed_and_buried_jobs(
    beanstalkd_endpoints: list[str], beanstalk_tube: str
) -> None:
    first = beanstalkd_endpoints[0]
    with RawBeanstalk(first) as b:
        assert b.put_many(beanstalk_tube, [b"r%d" % i for i in range(5)], window=2) == 5
        assert b.put_many(beanstalk_tube, [b"d%d" % i for i in range(7)], delay=3600) == 7
        b.cmd(f"watch {beanstalk_tube}", b"WATCHING")
        b.cmd("ignore default", b"WATCHING")
        reply = b.cmd("reserve-with-timeout 1", b"RESERVED")
        b.rf.read(int(reply.split()[2]) + 2)
        b.cmd(f"bury {int(reply.split()[1])} 1", b"BURIED")
        assert b.stats_tube(beanstalk_tube)["current-jobs-buried"] == "1"
    with RawBeanstalk(beanstalkd_endpoints[1]) as b:
        b.put_many(beanstalk_tube, [b"other node"])
    assert servers.drain_tube(beanstalkd_endpoints, beanstalk_tube, timeout=30) == 13
    for endpoint in beanstalkd_endpoints:
        with RawBeanstalk(endpoint) as b:
            st = b.stats_tube(beanstalk_tube)
            assert not st or st["current-jobs-ready"] == st["current-jobs-delayed"] == "0"


@pytest.mark.integration
def test_delete_redis_prefix_deletes_only_that_prefix(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.mset({f"{redis_prefix}k{i}": i for i in range(1200)})
        client.set(f"{redis_prefix}-other", 1, ex=60)
        assert servers.delete_redis_prefix(redis_url, f"{redis_prefix}k") == 1200
        assert client.exists(f"{redis_prefix}-other") == 1
        assert not list(client.scan_iter(match=f"{redis_prefix}k*", count=1000))
    finally:
        client.close()


@pytest.mark.integration
def test_create_topic_has_leaders_and_delete_topics_removes_it(
    kafka_bootstrap: str, unique_name: str
) -> None:
    from confluent_kafka.admin import AdminClient

    servers.create_topic(kafka_bootstrap, unique_name, partitions=3)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    md = admin.list_topics(topic=unique_name, timeout=10).topics[unique_name]
    assert len(md.partitions) == 3 and all(p.leader >= 0 for p in md.partitions.values())
    servers.delete_topics(kafka_bootstrap, [unique_name])
    servers.delete_topics(kafka_bootstrap, [])  # nothing to do, no error
    assert wait_for(lambda: unique_name not in admin.list_topics(timeout=10).topics)
