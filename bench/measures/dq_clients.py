"""brokerq's dq producer and consumer as the dq measures use them: 3 nodes, Redis guard."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brokerq_beanstalk import Beanstalk, Consumer, Producer


def nodes(endpoints: list[str], tube: str) -> list[Beanstalk]:
    from brokerq_beanstalk import Beanstalk

    return [Beanstalk(endpoint=e, tube=tube) for e in endpoints]


def producer(endpoints: list[str], tube: str) -> Producer:
    """Writes 3 copies, needs 2 (go-queue's rule)."""
    from brokerq_beanstalk import Producer

    return Producer(nodes(endpoints, tube), replicas=3, min_written=2)


def consumer(endpoints: list[str], tube: str, redis_url: str, redis_prefix: str) -> Consumer:
    """A Consumer on every node with the Redis guard under ``redis_prefix``."""
    from brokerq_beanstalk import Consumer, DqConf, RedisConf

    conf = DqConf(
        beanstalks=nodes(endpoints, tube), redis=RedisConf(url=redis_url, prefix=redis_prefix)
    )
    return Consumer(conf)


def stop(consumer: Consumer) -> None:
    """Stop a consumer, ignoring errors (the figures are already taken)."""
    with contextlib.suppress(Exception):
        consumer.stop()


def close(producer: Producer) -> None:
    """Close a producer, ignoring errors (the figures are already taken)."""
    with contextlib.suppress(Exception):
        producer.close()
