"""``Pusher``: kq's producer, durable by default and never silent about a failed write.

``push`` hands the record to librdkafka (acks=all, idempotence, lz4); a background thread
serves delivery reports. Failures go to ``on_error`` or are counted and raised by ``flush()`` /
``close()``; ``sync=True`` waits for each ack. Every wait (a full local queue, ``flush``,
``close``, the exit flush) is bounded by ``push_timeout`` in short slices, so Ctrl-C works;
what ``close`` gives up on is purged and reported (DeliveryError, or an ERROR line at exit).
Producer middleware hooks apply when any middleware has them; otherwise push takes its
measured fast path.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _KafkaProducer

from brokerq.broker import Producer
from brokerq.enqueue import refuse_options
from brokerq.errors import ConfigError, DeliveryError, MessageTooLarge, NotSupported
from brokerq.headers import with_options
from brokerq.message import Message
from brokerq.middleware import Middleware, MiddlewareChain
from brokerq.tracing import TracingMiddleware, default_middleware
from brokerq_kafka import clientconf
from brokerq_kafka._errors import serving, translate
from brokerq_kafka._produce import produce_within
from brokerq_kafka._wire import IdSource, record_headers, reported_message

logger = logging.getLogger(__name__)

NO_JOB_ID = (
    "the kafka broker cannot enqueue with a caller-chosen job_id: a Kafka topic is an "
    "append-only log that cannot refuse a duplicate record (use dq or sqlite for unique "
    "jobs; kq schedules are idempotent by their fire ids)"
)

ErrorCallback = Callable[[Message, DeliveryError], None]


def _brokers(brokers: str | Sequence[str]) -> str:
    text = brokers if isinstance(brokers, str) else ",".join(brokers)
    if not text.strip():
        raise ConfigError("kafka brokers: at least one host:port is required")
    return text


def _chain(
    middleware: MiddlewareChain | Sequence[Middleware] | None, tracing: bool | None
) -> MiddlewareChain:
    if isinstance(middleware, MiddlewareChain):
        chain = list(middleware)
    elif middleware is None:
        chain = list(default_middleware())
    else:
        chain = [*default_middleware(), *middleware]
    if tracing is True and not any(isinstance(m, TracingMiddleware) for m in chain):
        chain.append(TracingMiddleware())
    elif tracing is False:
        chain = [m for m in chain if not isinstance(m, TracingMiddleware)]
    return MiddlewareChain(chain)


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
        with_id: bool = False,
        tracing: bool | None = None,
        middleware: MiddlewareChain | Sequence[Middleware] | None = None,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``config``: librdkafka keys passed through (ConfigError for one that would weaken
        ``acks="all"`` / idempotence); ``middleware``: producer hooks (default: tracing when
        an OpenTelemetry SDK is configured; ``tracing=True`` / ``False`` forces it).

        A record gets headers only when something needs them (caller headers, a type or
        time limit, a trace context): by default it is a plain value, as fast as a raw
        produce, and consumers use its coordinates ``topic/partition/offset`` as
        ``Message.id`` (brokerq_kafka._wire). ``with_id=True`` writes a producer-made id
        header (26 chars) on every record instead."""
        self.topic = topic
        self._chain = _chain(middleware, tracing)
        self._hooks = self._chain.push_hooks  # decided once: keeps the fast path fast
        # No id header by default: consumers use topic/partition/offset as Message.id.
        self._ids: IdSource | None = IdSource() if with_id else None
        self.sync = sync
        self.push_timeout = float(push_timeout)
        self._on_error = on_error
        self._failed = 0
        self._last_error = ""
        self._failures_seen = 0  # failed delivery reports, on_error's too
        self._lock = threading.Lock()
        self._closed = False
        durable = str(acks) in ("all", "-1")
        defaults: dict[str, Any] = {"compression.type": compression}
        if not durable:
            defaults.update({"acks": acks, "enable.idempotence": False})
        if chunk_size is not None:
            defaults["batch.size"] = chunk_size
        if flush_interval is not None:
            defaults["linger.ms"] = flush_interval * 1000.0
        internal: dict[str, Any] = {
            "error_cb": self._on_client_error,
            "on_delivery": self._on_report,
            # Successes need no Python work unless a hook wants them.
            "delivery.report.only.error": not (sync or self._hooks),
        }
        if self._chain.stats_interval is not None:  # a metrics middleware wants queue depth
            internal["statistics.interval.ms"] = max(10, int(self._chain.stats_interval * 1000))
            internal["stats_cb"] = self._on_stats
        if sync:
            # librdkafka must give up (and report) within push_timeout.
            internal["message.timeout.ms"] = max(1, int(self.push_timeout * 1000) - 200)
        try:
            conf = clientconf.build(
                "durable" if durable else "producer",
                bootstrap=_brokers(brokers),
                user=config,
                defaults=defaults,
                security=security,
                internal=internal,
            )
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
                except Exception as e:
                    logger.error("kafka pusher for %s at exit: %s", topic, e)

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
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        type: str | None = None,
    ) -> None:
        """Queue one message; with ``sync`` wait for the broker's ack (DeliveryError if none).

        Kafka has no priorities (order is per partition) and cannot refuse a duplicate id:
        ``priority`` and ``job_id`` / ``unique_for`` raise NotSupported (a topic is an
        append-only log: a producer cannot ask whether a record with some id is still
        waiting or running). kq-backed schedules are idempotent by their fire ids instead
        (brokerq_kafka.fires).
        """
        if (
            job_id is not None
            or unique_for is not None
            or priority is not None
            or time_limit is not None
            or type is not None
        ):
            if job_id is not None or unique_for is not None:
                raise NotSupported(NO_JOB_ID)
            refuse_options("kafka", job_id=job_id, unique_for=unique_for, priority=priority)
            headers = with_options(headers, time_limit=time_limit, type=type)
        if self._hooks:
            headers = self._chain.before_push(self.topic, headers)
        if self.sync or self._closed:
            if self._closed:
                raise DeliveryError(f"kafka pusher for {self.topic!r} is closed")
            self._push_sync(value, key, headers)
            return
        try:
            if headers is None and self._ids is None:
                self._produce(self.topic, value, key)  # the default record: no header
            else:
                self._produce(self.topic, value, key, headers=self._headers(headers))
        except BufferError:
            self._push_when_room(value, key, headers, None)
        except KafkaException as e:
            error = self._error(e)
            if self._hooks:
                self._chain.after_push(self.topic, error)
            raise error from e

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
        kwargs: dict[str, Any] = {}
        hdrs = self._headers(headers)
        if hdrs is not None:
            kwargs["headers"] = hdrs
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        try:
            self._produce(self.topic, value, key, **kwargs)
        except KafkaException as e:
            raise self._error(e) from e

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything pushed is acknowledged, at most ``timeout`` seconds
        (default ``push_timeout``); DeliveryError for what failed or is still waiting."""
        left = self._flush(self.push_timeout if timeout is None else timeout)
        if left:
            raise DeliveryError(
                f"kafka {self.topic!r}: {left} message(s) not acknowledged within "
                f"{self.push_timeout if timeout is None else timeout}s",
                failed=left,
            )
        self._raise_failures()

    def _flush(self, timeout: float) -> int:
        """librdkafka's flush in 0.1 s slices (signals such as Ctrl-C run between them)."""
        deadline = time.monotonic() + timeout
        while True:
            left = serving(self._producer.flush, min(0.1, max(0.0, deadline - time.monotonic())))
            if not left or time.monotonic() >= deadline:
                return left

    def close(self) -> None:
        """Flush (at most ``push_timeout``), stop the report thread; idempotent. What is
        still undelivered then is purged and raised as DeliveryError."""
        if self._closed:
            return
        self._closed = True
        try:
            left = self._flush(self.push_timeout)
            if left:
                before = self._failures_seen  # flush counts log events too: count purge reports
                self._producer.purge()
                serving(self._producer.flush, 0.5)
                left = self._failures_seen - before or left
                raise DeliveryError(
                    f"kafka {self.topic!r}: {left} message(s) not delivered within "
                    f"push_timeout={self.push_timeout}s (is the broker reachable?)",
                    failed=left,
                )
            self._raise_failures()
        finally:
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
            error: Exception = DeliveryError(
                f"kafka {self.topic!r}: no acknowledgement within push_timeout={self.push_timeout}s"
            )
        elif result[0] is not None:
            error = self._error(KafkaException(result[0]))
        else:
            if self._hooks:
                self._chain.after_push(self.topic, None)
            return
        if self._hooks:
            self._chain.after_push(self.topic, error)
        raise error

    def _push_when_room(
        self,
        value: bytes | str,
        key: bytes | str | None,
        headers: Mapping[str, str] | None,
        on_delivery: Callable[[Any, Any], None] | None,
        deadline: float | None = None,
    ) -> None:
        """The local queue is full: wait for room, at most until push_timeout."""
        if self._closed:
            raise DeliveryError(f"kafka pusher for {self.topic!r} is closed")
        produce_within(
            self._producer,
            time.monotonic() + self.push_timeout if deadline is None else deadline,
            self.topic,
            value,
            key,
            self._headers(headers),
            on_delivery=on_delivery,
            what=f"kafka push (push_timeout={self.push_timeout}s)",
        )

    def _headers(self, headers: Mapping[str, str] | None) -> list[tuple[str, Any]] | None:
        """The record's headers: the id header when ``with_id``, then the caller's."""
        return record_headers(self._ids() if self._ids is not None else None, headers)

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
            if self._hooks:
                self._chain.after_push(self.topic, None)
            return
        error = self._error(KafkaException(err))
        failure = error if isinstance(error, DeliveryError) else DeliveryError(str(error))
        with self._lock:
            self._failures_seen += 1
        if self._hooks:
            self._chain.after_push(self.topic, failure)
        if self._on_error is not None:
            try:
                self._on_error(reported_message(record), failure)
                return
            except Exception:
                logger.exception("kafka pusher on_error callback failed")
        with self._lock:
            self._failed += 1
            self._last_error = str(failure)
        logger.error("kafka delivery failed: %s", failure)

    def _on_stats(self, text: str) -> None:
        """librdkafka's statistics (JSON) to the middleware (queue depth for metrics)."""
        try:
            stats = json.loads(text)
        except ValueError:
            return
        self._chain.client_stats(self.topic, stats)

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
