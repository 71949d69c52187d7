"""``KafkaSource``: at-least-once Kafka consumption for the core Worker (an internal class;
users get it through ``KafkaBroker.source()`` or run a ``Queue``).

A thin layer over the ``Poller`` (which alone owns the confluent consumer) and the core
``Dispatcher`` (ready queue, due-time heap, per-key lanes). It carries out the Worker's
outcomes and never turns one into another:

- ack: the offset is done;
- retry: the message is re-published to a retry topic (brokerq_kafka.retrytopics) with its
  next attempt and due time, acknowledged by the broker, then its offset is done: a retry
  never holds the commit point, and survives a crash with its attempt count;
- dead: the dead letter is written (cut to fit when too large) and acknowledged, then the
  offset is done;
- release: the delivery is handed out again, first, with the same attempt.

When a retry or dead-letter write fails, ``retry`` / ``dead`` raise BrokerError and the
offset stays unfinished: the Worker releases the delivery and re-applies its verdict.
Nothing here keeps a retry in memory (the bound on how long a retry may hold a partition
is 0 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from brokerq.broker import Delivery, Source
from brokerq.dispatch import Dispatcher
from brokerq.errors import BrokerError
from brokerq_kafka import _wire, retrytopics
from brokerq_kafka._writer import DurableWriter
from brokerq_kafka.config import KqConf
from brokerq_kafka.keyholds import KeyHolds
from brokerq_kafka.offsets import TP, Handle
from brokerq_kafka.poller import Poller

KDelivery = Delivery[Handle]
MIN_BUFFER = 1000  # records a source may hold beyond those being handled, at least


def _key_of(delivery: KDelivery) -> Hashable | None:
    return delivery.message.key


class KafkaSource(Source):
    """The receiving side of one consumer-group member."""

    def __init__(
        self,
        conf: KqConf,
        *,
        prefetch: int | None = None,
        batch_size: int = 500,
        room_wait: float = 0.5,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        """``hold``: True while the group is paused; the poller then fetches nothing."""
        self.conf = conf
        self.topic = conf.topic
        self.key_ordering = conf.key_ordering
        self.dispatcher: Dispatcher[KDelivery] = Dispatcher(
            max(prefetch or 0, MIN_BUFFER), key_of=_key_of if conf.key_ordering else None
        )
        self.holds = KeyHolds(self.dispatcher.done)
        self.writer = DurableWriter(conf)
        self.poller = Poller(
            conf,
            self.dispatcher,
            self.writer,
            self.holds,
            batch_size=batch_size,
            room_wait=room_wait,
            hold=hold,
        )
        self._settle = self.poller.book.settle
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, timeout: float) -> KDelivery | None:
        if self._thread is None:
            self._start()
        got = self.dispatcher.get(timeout)
        if got is None:
            self._check()
        return got

    def receive_many(self, max_n: int, timeout: float) -> list[KDelivery]:
        """Up to ``max_n`` deliveries under one lock acquisition of the dispatcher."""
        if self._thread is None:
            self._start()
        got = self.dispatcher.get_many(max_n, timeout)
        if not got:
            self._check()
        return got

    def _check(self) -> None:
        failure = self.poller.failure
        if failure is not None:
            raise BrokerError(f"kafka consumer for {self.topic!r} failed: {failure}") from failure

    # -- settling (any thread) -----------------------------------------------------------------
    def ack(self, delivery: KDelivery) -> None:
        self._settle(delivery.handle)
        if self.key_ordering:
            self.dispatcher.done(delivery)

    def retry(self, delivery: KDelivery, delay: float, error: str) -> None:
        """Re-publish for the next attempt, due in ``delay`` seconds; BrokerError when the
        retry topic does not acknowledge it (the offset then stays unfinished)."""
        msg = delivery.message
        due = time.time() + max(0.0, delay)
        topic = retrytopics.topic_for(self.conf, delay)
        headers = _wire.retry_headers(msg, error, delivery.handle.where(), due)
        self.writer.send(topic, msg.value, msg.key, headers)
        if self.key_ordering and msg.key is not None:
            self.holds.hold(msg.key, delivery, due)  # the key's lane stays busy
        self.poller.book.settle(delivery.handle)

    def dead(self, delivery: KDelivery, error: str) -> None:
        """Write the dead letter (cut to fit if needed); BrokerError when it is refused."""
        self.writer.dead(delivery.message, error, delivery.handle.where())
        self.ack(delivery)

    def release(self, delivery: KDelivery) -> None:
        self.dispatcher.put_front(delivery, holds_key=True)

    # -- lifecycle -----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self.poller.run, name=f"brokerq-kafka-poll-{self.topic}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop polling, commit what is finished, leave the group; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self.poller.stop()
        if thread is not None:
            thread.join(60)
        else:
            self.dispatcher.close()
            self.poller.consumer.close()
        self.writer.close()

    # -- introspection -------------------------------------------------------------------------
    def lag(self) -> dict[TP, int]:
        """Per assigned partition: messages between the commit point and the end of the log."""
        return dict(self.poller.lag)

    def assignment(self) -> list[TP]:
        return sorted(self.poller.book.states)

    def owned(self) -> int:
        """How many partitions of the main topic this member owns now (any thread: the
        poller's dict is copied in one step under the GIL)."""
        if self._closed:
            return 0
        topic = self.topic
        return sum(1 for t, _p in list(self.poller.book.states) if t == topic)

    def stats(self) -> dict[str, Any]:
        ready, delayed = self.dispatcher.counts()
        return {"ready": ready, "delayed": delayed, "key_holds": len(self.holds)}
