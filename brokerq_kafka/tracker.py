"""Per-partition offset tracking: commit only what is finished, never past unfinished work.

Kafka commits one number per partition: "everything before this offset is done". With
concurrent handlers messages finish out of order, so the commit point is the lowest offset
still outstanding (received but not finished), or one past the highest offset seen when
nothing is outstanding. A crash then redelivers at most the unfinished tail: at-least-once.
Trackers are touched only by the source's poll thread; other threads hand it finished
offsets through a lock-free deque.
"""

from __future__ import annotations


class PartitionTracker:
    """Outstanding offsets of one assigned partition (one object per assignment)."""

    __slots__ = ("committed", "high", "id_prefix", "outstanding", "partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.id_prefix = f"{topic}/{partition}/"  # ids of records that carry none
        self.outstanding: set[int] = set()
        self.high: int | None = None  # one past the highest offset seen
        self.committed: int | None = None  # the last offset we committed

    def add(self, offset: int) -> None:
        """A message at ``offset`` was received and is now outstanding."""
        self.outstanding.add(offset)
        if self.high is None or offset >= self.high:
            self.high = offset + 1

    def done(self, offset: int) -> None:
        """The message at ``offset`` is finished (acked or safely dead-lettered)."""
        self.outstanding.discard(offset)

    def position(self) -> int | None:
        """The offset safe to commit: nothing before it is unfinished (None: nothing seen)."""
        if self.outstanding:
            return min(self.outstanding)
        return self.high

    def pending_commit(self) -> int | None:
        """The position if it moved since the last commit, else None."""
        pos = self.position()
        if pos is None or pos == self.committed:
            return None
        return pos

    def __repr__(self) -> str:
        return (
            f"PartitionTracker({self.topic}[{self.partition}] outstanding={len(self.outstanding)} "
            f"high={self.high} committed={self.committed})"
        )
