"""dq: jobs by state (the heads beanstalkd can peek at, each job once) and the oldest age."""

from __future__ import annotations

import pytest

from brokerq.errors import NotSupported
from brokerq.testing.contract import wait_for
from brokerq_beanstalk import BeanstalkBroker

pytestmark = pytest.mark.integration


def test_heads_by_state_each_job_once_with_its_copies(broker: BeanstalkBroker) -> None:
    with broker.producer() as producer:
        producer.push(b"now")
        producer.delay(b"later", 60)
    replicas = min(broker.conf.replicas, len(broker.conf.beanstalks))
    # a push returns once min_written nodes answered: the last copy may land a moment later
    assert wait_for(lambda: len(broker.jobs("pending")[0].details["copies"]) == replicas, 10)
    (pending,) = broker.jobs("pending")
    assert pending.message is not None and pending.message.value == b"now"
    (delayed,) = broker.jobs("delayed")
    assert delayed.message is not None and delayed.message.value == b"later"
    assert delayed.state == "delayed" and delayed.due is not None
    assert broker.jobs("pending", 10, 1) == []
    with pytest.raises(NotSupported, match="peek-reserved"):
        broker.jobs("running")


def test_oldest_age_grows_while_a_job_waits(broker: BeanstalkBroker) -> None:
    assert broker.stats()["oldest_age_seconds"] == 0
    with broker.producer() as producer:
        producer.delay(b"later", 60)
    assert broker.stats()["oldest_age_seconds"] == 0  # delayed: not waiting for a worker
    with broker.producer() as producer:
        producer.push(b"now")
    assert wait_for(lambda: broker.stats()["oldest_age_seconds"] >= 1, 10, interval=0.2)
