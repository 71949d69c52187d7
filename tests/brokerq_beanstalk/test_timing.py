"""Sub-second delays: never early, and on time (p99 lateness printed)."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from brokerq.message import Message
from brokerq.testing.servers import percentile
from brokerq_beanstalk import Producer
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.brokerq_beanstalk.helpers import consuming
from tests.contract import wait_for

# serial: the p99 bound is about brokerq, not about sharing the CPU with other tests
pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_200_jobs_never_early_p99_under_100ms(make_conf: MakeConf) -> None:
    conf = make_conf(concurrency=16)
    lateness: dict[str, float] = {}
    lock = threading.Lock()

    def handler(msg: Message) -> None:
        now = time.time()
        assert msg.not_before is not None
        with lock:
            lateness[msg.id] = now - msg.not_before

    due: dict[str, float] = {}
    with consuming(conf, handler), Producer.from_conf(conf) as producer:
        for i in range(200):
            seconds = 0.5 + random.random() * 4.0
            if i % 2:
                jid = producer.delay(f"job-{i}", seconds)
                due[jid] = time.time() + seconds
            else:
                when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
                jid = producer.at(f"job-{i}", when)
                due[jid] = when.timestamp()
        assert wait_for(lambda: len(lateness) >= 200, timeout=30), f"{len(lateness)}/200 ran"
    values = list(lateness.values())
    early = [v for v in values if v < 0]
    p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
    print(
        f"\nlateness over {len(values)} jobs: p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms "
        f"max={max(values) * 1000:.1f}ms early={len(early)}"
    )
    assert set(lateness) == set(due)
    assert not early
    assert p99 <= 0.100
