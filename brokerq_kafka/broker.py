"""``KafkaBroker``: the kq backend as seen by the core (producers, sources, dead letters)."""

from __future__ import annotations

import re
import threading
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import BaseModel

from brokerq.broker import Broker, DeadLetter, WorkerInfo
from brokerq.errors import ConnectionFailed, NotSupported
from brokerq.message import Message
from brokerq.tls import handshake_error
from brokerq_kafka import _wire
from brokerq_kafka._dlqadmin import DeadLetterAdmin, make_ref
from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf
from brokerq_kafka.pusher import Pusher
from brokerq_kafka.source import KafkaSource
from brokerq_kafka.workers import members

if TYPE_CHECKING:
    from brokerq_kafka.fires import KafkaFireStore


class KafkaBroker(Broker):
    """Builds Pushers and KafkaSources from a ``KqConf`` section."""

    name: ClassVar[str] = "kafka"
    section: ClassVar[str] = "kq"
    config_model: ClassVar[type[BaseModel]] = KqConf

    def __init__(self, config: KqConf) -> None:
        self.conf = config
        self._reader: Any = None
        self._admin: DeadLetterAdmin | None = None
        self._lock = threading.Lock()

    def producer(self) -> Pusher:
        return Pusher(self.conf.brokers, self.conf.topic, **self.conf.producer_options())

    def source(self, prefetch: int | None = None) -> KafkaSource:
        return KafkaSource(self.conf)

    def fire_store(self, namespace: str) -> KafkaFireStore:
        """Schedule fires by one fenced transactional writer (brokerq_kafka.fires)."""
        from brokerq_kafka.fires import KafkaFireStore

        return KafkaFireStore(self.conf, namespace)

    def worker_options(self) -> dict[str, Any]:
        """Deprecated ``kq.processors`` / ``kq.retry``, when written in the section."""
        written = self.conf.model_fields_set
        options: dict[str, Any] = {}
        if "processors" in written:
            options["concurrency"] = self.conf.processors
        if "retry" in written and self.conf.retry is not None:
            options["retry"] = self.conf.retry
        return options

    def check(self) -> None:
        """Raise ConnectionFailed naming the bootstrap servers and the reason (TLS, SASL, ...)."""
        reasons: list[KafkaError] = []
        config = self.conf.common_config()
        config.update(self.conf.client_config)
        config.update({"group.id": self.conf.group, "error_cb": reasons.append})
        try:
            probe = Consumer(config)
        except (KafkaException, ValueError, TypeError) as e:
            raise translate(e, f"kafka client config for {self.conf.topic!r}") from e
        try:
            probe.list_topics(timeout=5)
        except KafkaException as e:
            probe.poll(0.1)  # serves error_cb: the TLS or SASL failure, if there was one
            why = self._why(e, reasons)
            raise ConnectionFailed(f"kafka {','.join(self.conf.brokers)}: {why}") from e
        finally:
            probe.close()

    def _why(self, e: KafkaException, reasons: list[KafkaError]) -> str:
        """One line: librdkafka's first specific error, made precise for TLS failures."""
        specific = [r for r in reasons if r.code() != KafkaError._ALL_BROKERS_DOWN]
        if not specific:
            return f"no answer within 5s: {e}"
        text = str(specific[0].str()).split(" (after ")[0]
        tls = str(self.conf.security().get("security.protocol", "")).endswith("SSL")
        if tls and ("SSL" in text or "certificate" in text):
            # librdkafka says "certificate verify failed" for every cause: ask OpenSSL why
            where = re.search(r"://([^/\s]+):(\d+)/", text)
            host, port = (
                (where.group(1), where.group(2)) if where else self.conf.brokers[0].rsplit(":", 1)
            )
            precise = handshake_error(
                host.strip("[]"),
                int(port),
                ca_file=self.conf.ca_file,
                cert_file=self.conf.cert_file,
                key_file=self.conf.key_file,
                check_hostname=self.conf.ssl_check_hostname,
            )
            if precise:
                return f"{host}:{port}: {precise}"
        return text

    def stats(self) -> dict[str, int]:
        """pending: messages not yet committed by the group; dead: dead letters still listed."""
        client = self._client()
        try:
            with self._lock:
                parts = self._partitions(self.conf.topic)
                committed = (
                    client.committed(
                        [TopicPartition(self.conf.topic, p) for p in parts], timeout=10
                    )
                    if parts
                    else []
                )
                pending = 0
                for tp in committed:
                    low, high = client.get_watermark_offsets(tp, timeout=10)
                    start = tp.offset if tp.offset >= 0 else low
                    pending += max(0, high - start)
                dead = self._dlq().open_count()
        except KafkaException as e:
            raise translate(e, f"kafka stats for {self.conf.topic!r}") from e
        return {"pending": pending, "dead": dead}

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """The DLQ records after the ``<group>.dlq-admin`` group's commits (ref "partition/offset");
        with ``refs``, only those whose ref or message id is listed."""
        with self._lock:
            letters = [
                _dead_letter(record) for record in self._dlq().records(10_000 if refs else limit)
            ]
        if refs is not None:
            letters = [d for d in letters if d.ref in refs or d.message.id in refs]
        return letters[:limit]

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Republish dead letters (all, or those refs) to the topic at attempt 1; how many."""
        with self._lock:
            return self._dlq().retry(refs)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Skip every listed dead letter (the records stay in the topic until retention).

        Kafka records cannot be deleted one by one: purging some refs is NotSupported.
        """
        if refs is not None:
            raise NotSupported(
                "kafka dead letters can only be purged all at once (records cannot be "
                "deleted one by one); retry the others first or purge without --ref"
            )
        with self._lock:
            return self._dlq().purge()

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    # -- internals ---------------------------------------------------------------------------
    def _client(self) -> Any:
        """A consumer in the main group for metadata, watermarks and committed offsets (never
        subscribes or commits)."""
        if self._reader is None:
            config = self.conf.common_config()
            config.update(self.conf.client_config)
            config.update(
                {
                    "group.id": f"{self.conf.group}",
                    "client.id": f"brokerq-admin-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": False,
                }
            )
            try:
                self._reader = Consumer(config)
            except (KafkaException, ValueError, TypeError) as e:
                raise translate(e, f"kafka client config for {self.conf.topic!r}") from e
        return self._reader

    # -- live workers (brokerq.heartbeat) ---------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Nothing to write: each consumer heartbeats to its group coordinator by itself."""

    def workers(self) -> list[WorkerInfo]:
        """The consumer group's live members (brokerq_kafka.workers)."""
        return members(self.conf.common_config(), self.conf.group, self.conf.topic)

    def _dlq(self) -> DeadLetterAdmin:
        if self._admin is None:
            self._admin = DeadLetterAdmin(self.conf)
        return self._admin

    def _partitions(self, topic: str) -> list[int]:
        md = self._client().list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        return sorted(md.partitions)


def _dead_letter(record: Any) -> DeadLetter:
    user: dict[str, str] = {}
    meta: dict[str, str] = {}
    for name, value in record.headers() or []:
        text = value.decode(errors="replace") if value is not None else ""
        (meta if name.startswith(_wire.PREFIX) else user)[name] = text
    failed_at = meta.get(_wire.FAILED_AT)
    message = Message(
        value=record.value() or b"",
        key=record.key(),
        headers=user,
        id=meta.get(_wire.ID, f"{record.topic()}/{record.partition()}/{record.offset()}"),
        attempt=int(meta.get(_wire.ATTEMPT, "1")),
        created_at=(record.timestamp()[1] or 0) / 1000.0,
    )
    return DeadLetter(
        message=message,
        error=meta.get(_wire.ERROR, ""),
        failed_at=float(failed_at) if failed_at else None,
        ref=make_ref(record.partition(), record.offset()),
    )
