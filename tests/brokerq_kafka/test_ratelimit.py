"""kq rate limits across processes: the group's limit split by partition share
(brokerq_kafka.sharelimit), through ``brokerq run`` with ``rate_limit:``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from brokerq.ratelimit import Rate
from brokerq_kafka import KafkaBroker
from brokerq_kafka.sharelimit import PartitionShareLimiter
from tests.brokerq.test_cli import BROKERQ, ROOT
from tests.contract import wait_for


def starts(out: Path) -> dict[str, list[float]]:
    """Start times per process, from the handler's files."""
    found: dict[str, list[float]] = {}
    for path in out.parent.glob(out.name + ".*"):
        found[path.suffix[1:]] = [float(line.split()[0]) for line in path.read_text().splitlines()]
    return found


def test_share_of_a_limit_follows_owned_partitions() -> None:
    owned = [2, 4]
    now = [1000.25]
    limiter = PartitionShareLimiter(lambda: (owned[0], owned[1]), clock=lambda: now[0])
    rate = Rate(50, 1.0)
    assert sum(limiter.hit("k", rate) == 0 for _ in range(40)) == 25  # half of the partitions
    assert 0 < limiter.hit("k", rate) <= 0.75  # until the next window
    now[0] = 1001.0
    owned[0] = 0  # rebalancing: owns nothing, waits
    assert limiter.hit("k", rate) > 0
    # a quarter of 1/s: one start every fourth window, none lost to rounding
    one = PartitionShareLimiter(lambda: (1, 4), clock=lambda: now[0])
    ran = 0
    for window in range(8):
        now[0] = 2000.0 + window
        ran += sum(one.hit("k", Rate(1, 1.0)) == 0 for _ in range(3))
    assert ran == 2


@pytest.mark.integration
def test_limit_50_per_s_with_4_workers_in_2_processes(
    tmp_path: Path, make_conf: object, kafka_bootstrap: str, kafka_topic: str, unique_name: str
) -> None:
    """Prints the count with ``pytest -s``. ``make_conf`` makes (and drops) the DLQ topic."""
    group = f"g-{unique_name}"
    config = tmp_path / "kq.yaml"
    config.write_text(
        "name: kq-rate\n"
        f"kq: {{brokers: ['{kafka_bootstrap}'], topic: {kafka_topic}, group: {group},\n"
        "     offset: first, client_config: {session.timeout.ms: 6000,"
        " heartbeat.interval.ms: 500}}\n"
        "handler: tests.brokerq_kafka.rate_handler:record\n"
        "concurrency: 2\n"
        "rate_limit: {limit: 50/s}\n"
    )
    kq = {"brokers": [kafka_bootstrap], "topic": kafka_topic, "group": group}
    with KafkaBroker.from_config(kq) as broker, broker.producer() as producer:
        for i in range(2500):
            producer.push(str(i), key=str(i))  # keys spread them over the 4 partitions
        producer.flush(30)
    out = tmp_path / "starts"
    env = {**os.environ, "KQ_RATE_OUT": str(out)}
    procs = [
        subprocess.Popen(
            [BROKERQ, "run", str(config)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        assert wait_for(lambda: len(starts(out)) == 2, 90), "both processes should be handling"
        t0 = time.time() + 2.0  # past the rebalance that let the second one in
        assert wait_for(lambda: time.time() > t0 + 21, 40)
        counted = [t for ts in starts(out).values() for t in ts if t0 <= t < t0 + 20]
        print(f"kq rate limit 50/s, 2 processes x 2 threads: {len(counted)} starts in 20 s")
        assert 950 <= len(counted) <= 1050, len(counted)
        with KafkaBroker.from_config(kq) as broker:
            assert broker.stats()["dead"] == 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                assert proc.stderr is not None
                proc.stderr.close()
