"""How ``BeanstalkSource`` carries out a settlement: record in Redis, then act on the copies.

A mixin of ``brokerq_beanstalk.source.BeanstalkSource`` (split from it by concept; see that
module's docstring for what each outcome records). When Redis is down at settle time the copy
stays reserved and the record waits in ``Claims`` until Redis answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from brokerq.broker import Delivery
from brokerq.errors import ConnectionFailed
from brokerq_beanstalk._node import Handle
from brokerq_beanstalk.claims import Claims, Pending
from brokerq_beanstalk.replicas import Replicas

logger = logging.getLogger("brokerq_beanstalk.source")


class Settling:
    """Settling over the source's claims and replica copies (set by ``BeanstalkSource``)."""

    _claims: Claims
    _replicas: Replicas

    def _settle(
        self,
        delivery: Delivery[Handle],
        record: Callable[[], None],
        op: str,
        delay: int = 0,
        copies_op: str = "delete",
    ) -> None:
        """Record the outcome in Redis, then ``op`` the copy and ``copies_op`` its other copies.

        Held copies are only touched by the node threads, never settled, until the record
        is in Redis: a done mark always precedes every delete.
        """
        self._claims.remove(delivery.handle.token)  # the record below drops the claim
        try:
            record()
        except ConnectionFailed as e:
            logger.warning(
                "job %s: redis down, %s kept reserved until it can be recorded: %s",
                delivery.message.id,
                op,
                e,
            )
            self._claims.defer(
                Pending(
                    delivery.message.id,
                    record,
                    lambda: self._submit(delivery, op, delay, copies_op),
                )
            )
            return
        self._submit(delivery, op, delay, copies_op)

    def _submit(self, delivery: Delivery[Handle], op: str, delay: int, copies_op: str) -> None:
        h = delivery.handle
        h.node.submit(op, h, delay)
        for c in self._replicas.drop(delivery.message.id, h.token):
            c.priority = h.priority
            c.node.submit(copies_op, c, delay if copies_op == "release" else 0)
