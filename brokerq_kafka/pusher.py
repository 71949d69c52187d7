"""``Pusher``: kq's producer, durable by default and never silent about a failed write.

``push`` only hands the record to librdkafka, which batches it (acks=all, idempotence,
lz4); a background thread serves delivery reports, so callers never call ``poll()``.
Failures go to ``on_error`` or are counted and raised by ``flush()`` / ``close()``.
With ``sync=True`` every push waits for the broker's ack, bounded by ``push_timeout``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _KafkaProducer

from brokerq.broker import Producer, refuse_options
from brokerq.errors import DeliveryError, MessageTooLarge
from brokerq.headers import with_options
from brokerq.message import Message
from brokerq.tracing import configured
from brokerq_kafka._errors import translate
from brokerq_kafka._wire import ID, IdSource, record_headers
from brokerq_kafka.config import LIBRDKAFKA_LOGGER

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[Message, DeliveryError], None]


def _brokers(brokers: str | Sequence[str]) -> str:
    text = brokers if isinstance(brokers, str) else ",".join(brokers)
    if not text.strip():
        from brokerq.errors import ConfigError

        raise ConfigError("kafka brokers: at least one host:port is required")
    return text


def _failed_message(record: Any) -> Message:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers() or []) if v is not None}
    return Message(
        value=record.value() or b"",
        key=record.key(),
        headers={k: v for k, v in headers.items() if k != "brokerq-id"},
        id=headers.get("brokerq-id", ""),
    )


class Pusher(Producer):
    """Writes messages to one topic (go-queue ``kq.NewPusher``)."""

    def __init__(
        self,
        brokers: str | Sequence[str],
        topic: str,
        *,
        sync: bool = False,
        push_timeout: float = 10.0,
        acks: str | int = "all",
        compression: str = "lz4",
        chunk_size: int | None = None,
        flush_interval: float | None = None,
        on_error: ErrorCallback | None = None,
        config: Mapping[str, Any] | None = None,
        with_id: bool = True,
        tracing: bool | None = None,
    ) -> None:
        self.topic = topic
        # Trace context goes into headers when an OpenTelemetry SDK is configured (or when asked);
        # deciding once here keeps the per-push check off the hot path.
        self._tracing = configured() if tracing is None else tracing
        # Without the id header, consumers use topic/partition/offset as Message.id (~2x faster).
        self._with_id = with_id
        self.sync = sync
        self.push_timeout = float(push_timeout)
        self._on_error = on_error
        self._failed = 0
        self._last_error = ""
        self._lock = threading.Lock()
        self._closed = False
        self._next_id = IdSource()
        durable = str(acks) in ("all", "-1")
        conf: dict[str, Any] = {
            "bootstrap.servers": _brokers(brokers),
            "logger": LIBRDKAFKA_LOGGER,
            "acks": acks,
            "enable.idempotence": durable,
            "compression.type": compression,
            "error_cb": self._on_client_error,
            "on_delivery": self._on_report,
        }
        if chunk_size is not None:
            conf["batch.size"] = chunk_size
        if flush_interval is not None:
            conf["linger.ms"] = flush_interval * 1000.0
        if sync:
            # librdkafka must give up (and report) within push_timeout.
            conf["message.timeout.ms"] = max(1, int(self.push_timeout * 1000) - 200)
        else:
            # Successes need no Python work; only failures come back as reports.
            conf["delivery.report.only.error"] = True
        conf.update(config or {})
        try:
            self._producer = _KafkaProducer(conf)
        except (KafkaException, ValueError, TypeError) as e:
            raise translate(e, f"kafka producer config for topic {topic!r}") from e
        self._produce = self._producer.produce
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._serve, name="brokerq-kafka-pusher", daemon=True
        )
        self._poller.start()
        ref = weakref.ref(self)

        def flush_at_exit() -> None:
            pusher = ref()
            if pusher is not None:
                try:
                    pusher.close()
                except Exception:
                    logger.exception("flushing kafka pusher for %s at exit failed", topic)

        self._atexit = flush_at_exit
        atexit.register(flush_at_exit)

    # -- public ------------------------------------------------------------------------------
    def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        """Queue one message; with ``sync`` wait for the broker's ack (DeliveryError if none).

        Kafka has no priorities (order is per partition) and cannot refuse a duplicate id:
        ``priority`` and ``job_id`` raise NotSupported.
        """
        if job_id is not None or priority is not None or time_limit is not None or type is not None:
            refuse_options("kafka", job_id=job_id, priority=priority)
            headers = with_options(headers, time_limit=time_limit, type=type)
        if self.sync or self._closed:
            if self._closed:
                raise DeliveryError(f"kafka pusher for {self.topic!r} is closed")
            self._push_sync(value, key, headers)
            return
        try:
            if headers is None and not self._tracing:
                if self._with_id:
                    self._produce(self.topic, value, key, headers=[(ID, self._next_id())])
                else:
                    self._produce(self.topic, value, key)
            else:
                self._produce(
                    self.topic,
                    value,
                    key,
                    headers=record_headers(self._next_id(), headers, self._tracing),
                )
        except BufferError:
            self._push_when_room(value, key, headers, None)
        except KafkaException as e:
            raise self._error(e) from e

    def try_push(
        self,
        value: bytes | str,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        """Hand one record to librdkafka or raise BufferError when its queue is full."""
        if self._closed:
            raise DeliveryError(f"kafka pusher for {self.topic!r} is closed")
        hdrs = record_headers(self._next_id(), headers, self._tracing)
        try:
            if on_delivery is None:
                self._produce(self.topic, value, key, headers=hdrs)
            else:
                self._produce(self.topic, value, key, headers=hdrs, on_delivery=on_delivery)
        except KafkaException as e:
            raise self._error(e) from e

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything pushed is acknowledged; raise DeliveryError for failures."""
        left = self._producer.flush() if timeout is None else self._producer.flush(timeout)
        if left:
            raise DeliveryError(
                f"kafka {self.topic!r}: {left} message(s) not acknowledged within {timeout}s",
                failed=left,
            )
        self._raise_failures()

    def close(self) -> None:
        """Flush everything, stop the report thread; idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._stop.set()
            self._poller.join(5)
            atexit.unregister(self._atexit)

    @property
    def failed(self) -> int:
        """Failed deliveries not yet reported by ``flush()`` (and not taken by on_error)."""
        return self._failed

    # -- internals ---------------------------------------------------------------------------
    def _push_sync(
        self, value: bytes | str, key: bytes | str | None, headers: Mapping[str, str] | None
    ) -> None:
        deadline = time.monotonic() + self.push_timeout
        done = threading.Event()
        result: list[Any] = []

        def report(err: Any, record: Any) -> None:
            result.append(err)
            done.set()

        try:
            self.try_push(value, key, headers, report)
        except BufferError:
            self._push_when_room(value, key, headers, report, deadline)
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise DeliveryError(
                f"kafka {self.topic!r}: no acknowledgement within push_timeout={self.push_timeout}s"
            )
        if result[0] is not None:
            raise self._error(KafkaException(result[0]))

    def _push_when_room(
        self,
        value: bytes | str,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        on_delivery: Callable[[Any, Any], None] | None,
        deadline: float | None = None,
    ) -> None:
        """The local queue is full: wait for room, at most until push_timeout."""
        if deadline is None:
            deadline = time.monotonic() + self.push_timeout
        while True:
            self._producer.poll(0.005)
            try:
                self.try_push(value, key, headers, on_delivery)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"kafka {self.topic!r}: local queue still full after "
                        f"push_timeout={self.push_timeout}s (is the broker reachable?)"
                    ) from None

    def _error(self, e: KafkaException) -> Exception:
        err = translate(e, f"kafka push to {self.topic!r}", DeliveryError)
        return err if isinstance(err, (DeliveryError, MessageTooLarge)) else DeliveryError(str(err))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:
                logger.exception("kafka pusher report thread")

    def _on_report(self, err: Any, record: Any) -> None:
        if err is None:
            return
        error = self._error(KafkaException(err))
        failure = error if isinstance(error, DeliveryError) else DeliveryError(str(error))
        if self._on_error is not None:
            try:
                self._on_error(_failed_message(record), failure)
                return
            except Exception:
                logger.exception("kafka pusher on_error callback failed")
        with self._lock:
            self._failed += 1
            self._last_error = str(failure)
        logger.error("kafka delivery failed: %s", failure)

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            logger.error("kafka producer for %s: fatal error: %s", self.topic, err.str())
        else:
            logger.warning("kafka producer for %s: %s", self.topic, err.str())

    def _raise_failures(self) -> None:
        with self._lock:
            failed, last = self._failed, self._last_error
            self._failed = 0
        if failed:
            raise DeliveryError(
                f"kafka {self.topic!r}: {failed} message(s) failed; last error: {last}",
                failed=failed,
            )


class AsyncPusher:
    """``Pusher`` for asyncio code: push never blocks the loop; flush/close run off-loop."""

    def __init__(self, brokers: str | Sequence[str], topic: str, **options: Any) -> None:
        self.pusher = Pusher(brokers, topic, **options)

    async def push(
        self,
        value: bytes | str,
        key: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one message (with ``sync``: await the broker's ack)."""
        pusher = self.pusher
        deadline = time.monotonic() + pusher.push_timeout
        future: asyncio.Future[Any] | None = None
        report: Callable[[Any, Any], None] | None = None
        if pusher.sync:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            fut = future

            def settle(err: Any) -> None:
                if not fut.done():
                    fut.set_result(err)

            def report(err: Any, record: Any) -> None:
                loop.call_soon_threadsafe(settle, err)

        while True:
            try:
                pusher.try_push(value, key, headers, report)
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"kafka {pusher.topic!r}: local queue still full after "
                        f"push_timeout={pusher.push_timeout}s"
                    ) from None
                await asyncio.sleep(0.005)
        if future is not None:
            try:
                err = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise DeliveryError(
                    f"kafka {pusher.topic!r}: no acknowledgement within "
                    f"push_timeout={pusher.push_timeout}s"
                ) from None
            if err is not None:
                raise pusher._error(KafkaException(err))

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pusher.flush, timeout)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pusher.close)

    async def __aenter__(self) -> AsyncPusher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
