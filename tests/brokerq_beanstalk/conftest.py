"""Fixtures for the dq backend: a config on a unique tube across the three nodes and a unique
Redis prefix (fixtures ``beanstalkd_endpoints``, ``redis_url``, ``beanstalk_tube``,
``redis_prefix`` come from tests/services.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brokerq_beanstalk import BeanstalkBroker, DqConf

MakeConf = Callable[..., DqConf]


@pytest.fixture
def make_conf(
    beanstalkd_endpoints: list[str], redis_url: str, beanstalk_tube: str, redis_prefix: str
) -> MakeConf:
    """``make_conf(**overrides)`` → a DqConf on this test's tube and Redis prefix."""

    def make(**overrides: Any) -> DqConf:
        data: dict[str, Any] = {
            "beanstalks": [{"endpoint": e, "tube": beanstalk_tube} for e in beanstalkd_endpoints],
            "redis": {"url": redis_url, "prefix": redis_prefix},
            "claim_ttl": "3s",
            "concurrency": 4,
        }
        data.update(overrides)
        return DqConf.model_validate(data)

    return make


@pytest.fixture
def broker(make_conf: MakeConf) -> Iterator[BeanstalkBroker]:
    b = BeanstalkBroker(make_conf())
    yield b
    b.close()
