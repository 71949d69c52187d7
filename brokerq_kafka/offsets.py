"""The offset book: what may be committed, and how many times a record's consumer died.

Per assigned partition a ``PartitionState`` holds its ``PartitionTracker`` (the commit rule:
never past an unfinished offset) and the crash accounting that lets a redelivered record
come back with ``attempt + 1`` after its consumer was killed (SIGKILL, OOM, ``os._exit``):

- **Reservation.** Before a record is handed out, the commit metadata must say that offsets
  up to ``reserved`` may be in flight (``r=``). The poller reserves ``RESERVE_AHEAD`` offsets at
  a time, so this costs one commit per ``RESERVE_AHEAD`` records of a partition.
- **Clean or not.** Every close and revoke commits with the ``c`` flag (unless a dead owner's
  careful window is still open: that is passed on). A member that takes a partition whose
  metadata lacks it knows the previous owner died, and that anything from the committed
  offset up to ``r`` may have been running when it did.
- **Careful window.** Records in that window are handed out one at a time per partition, each
  after a synchronous commit that lists it as in flight with its crash count plus one
  (``k=offset:count``). If the member dies while running it, the next owner reads that
  count and adds it to the record's attempt; a handler that kills its process therefore
  runs at most ``max_attempts + 1`` times (the first death is only seen as "unclean")
  before the Worker dead-letters it as WorkerCrashed. Outside the window, and on clean
  handovers, no attempt is ever added.

Everything here runs on the poll thread, except ``settle`` (any thread: a lock-free deque).
Metadata stays under ``METADATA_LIMIT`` characters (Kafka's default limit is 4096).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from brokerq_kafka._wire import Origin
from brokerq_kafka.tracker import PartitionTracker

TP = tuple[str, int]
MAGIC = "bq1"
RESERVE_AHEAD = 1000
METADATA_LIMIT = 3000


class PartitionState:
    """One assignment of one partition: its tracker, reservation and crash counts."""

    __slots__ = ("careful_end", "careful_out", "counts", "held", "reserved", "tracker")

    def __init__(self, topic: str, partition: int) -> None:
        self.tracker = PartitionTracker(topic, partition)
        self.reserved: int | None = None  # offsets up to this may be handed out
        self.careful_end: int | None = None  # the previous owner died: careful up to here
        self.careful_out: int | None = None  # the one careful record out now
        self.counts: dict[int, int] = {}  # offset -> consumers that died running it
        self.held: deque[tuple[Any, float | None]] = deque()  # (delivery, due) not yet out

    @property
    def tp(self) -> TP:
        return (self.tracker.topic, self.tracker.partition)


class Handle:
    """Where a delivery came from: its assignment's state, its offset, its first record."""

    __slots__ = ("offset", "origin", "state")

    def __init__(self, state: PartitionState, offset: int, origin: Origin | None) -> None:
        self.state = state
        self.offset = offset
        self.origin = origin

    def where(self) -> Origin:
        """The main-topic record this message started as."""
        if self.origin is not None:
            return self.origin
        t = self.state.tracker
        return Origin(t.topic, t.partition, self.offset)

    def __repr__(self) -> str:
        return f"{self.state.tracker.topic}/{self.state.tracker.partition}/{self.offset}"


def encode_metadata(reserved: int | None, counts: dict[int, int], clean: bool) -> str:
    """``bq1 r=1200 c k=1005:2,1010:1`` (only what fits in METADATA_LIMIT)."""
    parts = [MAGIC]
    if reserved is not None:
        parts.append(f"r={reserved}")
    if clean:
        parts.append("c")
    text = " ".join(parts)
    if counts:
        items: list[str] = []
        room = METADATA_LIMIT - len(text) - 3
        for o, n in sorted(counts.items()):
            item = f"{o}:{n}"
            room -= len(item) + 1
            if room < 0:
                break
            items.append(item)
        text += " k=" + ",".join(items)
    return text


def decode_metadata(text: str | None) -> tuple[int | None, dict[int, int], bool] | None:
    """(reserved, counts, clean) from commit metadata; None when it is not ours."""
    if not text or not text.startswith(MAGIC):
        return None
    reserved: int | None = None
    counts: dict[int, int] = {}
    clean = False
    try:
        for token in text.split()[1:]:
            if token == "c":
                clean = True
            elif token.startswith("r="):
                reserved = int(token[2:])
            elif token.startswith("k="):
                for item in token[2:].split(","):
                    if item:
                        o, n = item.split(":")
                        counts[int(o)] = int(n)
    except ValueError:
        return None
    return reserved, counts, clean


class OffsetBook:
    """Partition states of the current assignment (poll thread), fed settled offsets by any
    thread through ``settle``."""

    def __init__(self) -> None:
        self.states: dict[TP, PartitionState] = {}
        self._done: deque[Handle] = deque()

    # -- assignment --------------------------------------------------------------------------
    def assign(self, topic: str, partition: int, committed: int, metadata: str | None) -> None:
        """Start tracking a partition whose group commit is ``committed`` (negative: none)
        with ``metadata``; an unclean previous owner opens the careful window."""
        state = PartitionState(topic, partition)
        meta = decode_metadata(metadata)
        if meta is not None:
            reserved, counts, clean = meta
            state.counts = {o: n for o, n in counts.items() if o >= committed}
            if not clean and reserved is not None and committed >= 0 and reserved >= committed:
                state.careful_end = reserved
        self.states[(topic, partition)] = state

    def revoke(self, tp: TP) -> PartitionState | None:
        return self.states.pop(tp, None)

    def get(self, tp: TP) -> PartitionState | None:
        return self.states.get(tp)

    # -- settling ----------------------------------------------------------------------------
    def settle(self, handle: Handle) -> None:
        """The delivery is finished (acked, re-published for retry, or dead-lettered)."""
        self._done.append(handle)

    def apply_done(self) -> bool:
        """Apply settled offsets (poll thread); True when a careful record was settled."""
        done = self._done
        careful = False
        while done:
            h = done.popleft()
            state = h.state
            state.tracker.done(h.offset)
            if state.counts:
                state.counts.pop(h.offset, None)
            if state.careful_out == h.offset:
                state.careful_out = None
                careful = True
        return careful

    # -- what goes out -----------------------------------------------------------------------
    def needs_commit(self, state: PartitionState) -> bool:
        """True when the next held item may go out only after a commit (reservation or a
        careful record); the caller then commits ``offsets([state])`` and calls ``release``."""
        if not state.held:
            return False
        off = state.held[0][0].handle.offset
        if state.careful_end is not None and off <= state.careful_end:
            if state.careful_out is not None:
                return False
            state.careful_out = off
            return True
        state.careful_end = None
        if state.reserved is None or off > state.reserved:
            state.reserved = off + RESERVE_AHEAD
            return True
        return False

    def release(self, state: PartitionState) -> list[tuple[Any, float | None]]:
        """Held items that may go out now (after ``needs_commit`` was served)."""
        out: list[tuple[Any, float | None]] = []
        held = state.held
        while held:
            off = held[0][0].handle.offset
            if state.careful_end is not None and off <= state.careful_end:
                if state.careful_out != off:
                    break
                out.append(held.popleft())
                break
            if state.reserved is None or off > state.reserved:
                break
            out.append(held.popleft())
        return out

    # -- commits -----------------------------------------------------------------------------
    def commit_points(
        self, states: list[PartitionState], *, clean: bool, changed_only: bool
    ) -> list[tuple[PartitionState, int, str]]:
        """(state, offset, metadata) to commit for ``states``; ``changed_only`` skips those
        whose position did not move (periodic commits)."""
        out: list[tuple[PartitionState, int, str]] = []
        for state in states:
            tracker = state.tracker
            pos = tracker.pending_commit() if changed_only else tracker.position()
            if pos is None:
                continue
            counts = {o: n for o, n in state.counts.items() if o >= pos}
            if not clean and state.careful_out is not None:
                counts[state.careful_out] = state.counts.get(state.careful_out, 0) + 1
            reserved, flag = state.reserved, clean
            if state.careful_end is not None:  # a dead owner's window is still open:
                flag = False  # pass it on, even on a clean handover
                reserved = max(reserved or -1, state.careful_end)
            out.append((state, pos, encode_metadata(reserved, counts, flag)))
        return out

    def crashes(self, state: PartitionState, offset: int) -> int:
        return state.counts.get(offset, 0) if state.counts else 0
