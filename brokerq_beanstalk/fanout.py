"""One job's copies on their way to the nodes, and the rule that says when it is written.

A job is written when ``need`` (``min_written``) nodes acked it: ``Write.settled`` turns true
as soon as that many answered INSERTED (or every node answered and it cannot be reached).
The producer returns then, without waiting for the slowest node, whose answer is picked up
by a later call (brokerq_beanstalk._wire: answers arrive in order and go to their callbacks):
``on_late`` gets it, so the copy's location is still recorded (or its failure logged). The
guarantee is unchanged: an id is returned only once ``need`` nodes hold the job.

``error()`` is the exception ``delay`` raises for a job that did not reach ``need`` nodes:
MessageTooLarge when a node refused its size, ConnectionFailed when no node could be reached,
DeliveryError naming every failed node otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from brokerq.errors import BrokerError, ConnectionFailed, DeliveryError, MessageTooLarge
from brokerq_beanstalk._wire import NodeConn, PutDone

#: Called with the write and the late answer (a copy's job id, or its error).
Late = Callable[["Write", NodeConn, int | BrokerError], None]


@dataclass(slots=True)
class Tally:
    """How many writes of a group are not settled yet."""

    left: int = 0


@dataclass(slots=True, eq=False)
class Write:
    """One job: its id and bytes, and what each node said so far."""

    bq_id: str
    body: bytes
    due: float | None
    need: int
    tally: Tally
    on_late: Late | None = None
    written: list[tuple[NodeConn, int]] = field(default_factory=list)
    failed: dict[str, BrokerError] = field(default_factory=dict)
    waiting: int = 0
    returned: bool = False  # the caller has its outcome: later answers go to ``on_late``

    def __post_init__(self) -> None:
        self.tally.left += 1

    @property
    def settled(self) -> bool:
        return len(self.written) >= self.need or self.waiting == 0

    @property
    def ok(self) -> bool:
        return len(self.written) >= self.need

    def send(self, nodes: list[NodeConn], priority: int, delay: int, ttr: int) -> None:
        """Send the put to every node (answers come to ``answer``)."""
        for node in nodes:
            try:
                node.send_put(self.body, priority, delay, ttr, self.answer(node))
                self.waiting += 1
            except BrokerError as e:
                self.failed[node.endpoint] = e
        if self.waiting == 0:
            self.tally.left -= 1

    def answer(self, node: NodeConn) -> PutDone:
        """The callback for ``node``'s answer (count ``waiting`` once it is sent)."""

        def done(result: int | BrokerError) -> None:
            was = self.settled
            self.waiting -= 1
            if isinstance(result, BrokerError):
                self.failed[node.endpoint] = result
            else:
                self.written.append((node, result))
            if not was and self.settled:
                self.tally.left -= 1
            if self.returned and self.on_late is not None:
                self.on_late(self, node, result)

        return done

    def copies(self) -> list[str]:
        return [f"{n.endpoint}/{jid}" for n, jid in self.written]

    def error(self) -> Exception | None:
        """None when written; else the error ``delay`` raises for it."""
        if self.ok:
            return None
        failed = self.failed
        too_big = [e for e in failed.values() if isinstance(e, MessageTooLarge)]
        if too_big:
            error: Exception = MessageTooLarge(f"job of {len(self.body)} bytes: {too_big[0]}")
            error.__cause__ = too_big[0]
            return error
        reasons = "; ".join(f"{ep}: {e}" for ep, e in failed.items())
        text = (
            f"job {self.bq_id} written to {len(self.written)} node(s), {self.need} needed; "
            f"failed: {reasons}"
        )
        if (
            not self.written
            and failed
            and all(isinstance(e, ConnectionFailed) for e in failed.values())
        ):
            error = ConnectionFailed(text)
        else:
            error = DeliveryError(text, failed=1)
        error.__cause__ = next(iter(failed.values()), None)
        return error
