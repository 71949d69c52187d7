"""dq's own behaviour and fault tests (tests/brokerq_beanstalk), run again with the guard on
Redis Cluster: the same test functions, with ``make_conf`` pointing the guard at the cluster.

Not repeated here: the tests that kill the single Redis or talk to it with a plain client
(``test_redis_killed``, ``test_consumers_killed_mid_handler``, ``test_guard_claim_is_exclusive``);
on the cluster, test_dq_redis_cluster.py kills a master instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from brokerq_beanstalk import DqConf
from tests.brokerq_beanstalk.conftest import MakeConf
from tests.brokerq_beanstalk.test_dq import (  # noqa: F401  (collected again, here)
    test_goqueue_bodies_are_consumed_once,
    test_identical_bodies_both_run,
    test_long_retry_delay_is_honoured_by_every_replica,
    test_purge_dead,
    test_retries_then_dead_letter_then_retry_dead,
    test_revoke_from_another_producer_never_runs,
)
from tests.brokerq_beanstalk.test_faults import test_beanstalkd_node_killed as _node_killed

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# it kills a beanstalkd of the single topology, which other tests use: run it alone
test_beanstalkd_node_killed = pytest.mark.serial(_node_killed)


@pytest.fixture
def make_conf(
    beanstalkd_endpoints: list[str], beanstalk_tube: str, redis_cluster: str, cluster_prefix: str
) -> MakeConf:
    def make(**overrides: Any) -> DqConf:
        data: dict[str, Any] = {
            "beanstalks": [{"endpoint": e, "tube": beanstalk_tube} for e in beanstalkd_endpoints],
            "redis": {"url": redis_cluster, "cluster": True, "prefix": cluster_prefix},
            "claim_ttl": "3s",
            "concurrency": 4,
        }
        data.update(overrides)
        return DqConf.model_validate(data)

    return make
