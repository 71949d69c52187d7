"""``KafkaBroker``: the kq backend as seen by the core (producers, sources, dead letters,
job control)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from confluent_kafka import Consumer, KafkaException
from pydantic import BaseModel

from brokerq.broker import Broker, Capabilities, DeadLetter, JobInfo, WorkerInfo
from brokerq.enqueue import check_job_id
from brokerq.errors import ConfigError
from brokerq_kafka import _wire, probe
from brokerq_kafka._dlqadmin import DeadLetterAdmin
from brokerq_kafka._dlqrefs import make_ref
from brokerq_kafka._errors import translate
from brokerq_kafka.config import KqConf
from brokerq_kafka.control import PauseWatch, read_flag, write_flag
from brokerq_kafka.deadjobs import dead_job
from brokerq_kafka.lag import LagProbe, dead_listing, lag_stats
from brokerq_kafka.pusher import Pusher
from brokerq_kafka.sharelimit import PartitionShareLimiter
from brokerq_kafka.source import KafkaSource
from brokerq_kafka.workers import members

if TYPE_CHECKING:
    from brokerq_kafka.fires import KafkaFireStore

logger = logging.getLogger(__name__)


class KafkaBroker(Broker):
    """Builds Pushers and sources from a ``KqConf`` section.

    ``counts_redeliveries``: a record whose consumer died while running it comes back with
    ``attempt + 1`` once the group knows it was in flight (brokerq_kafka.offsets): a handler
    that kills its process runs at most ``max_attempts + 1`` times.

    Job control (issue 15): ``pause``/``resume`` write the group's flag to the compacted
    ``<topic>.brokerq-control`` topic (brokerq_kafka.control); ``job`` finds dead letters only
    (``job_lookup`` stays False); ``rate_limiter`` splits the limit by partition share
    (brokerq_kafka.sharelimit); ``job_id=`` on push is refused (a Kafka topic cannot refuse
    a duplicate record).
    """

    name: ClassVar[str] = "kafka"
    section: ClassVar[str] = "kq"
    config_model: ClassVar[type[BaseModel]] = KqConf
    capabilities: ClassVar[Capabilities] = Capabilities(
        delay=False,
        priority=False,
        counts_redeliveries=True,
        idempotent_push=False,
        idempotent_delay=False,
        job_lookup=False,  # dead letters only: KafkaBroker.job
        pause=True,
        dead_letters=True,
    )

    def __init__(self, config: KqConf) -> None:
        self.conf = config
        self._reader: Consumer | None = None
        self._admin: DeadLetterAdmin | None = None
        self._lock = threading.Lock()
        self._lag = LagProbe(config, config.group)  # lag and oldest age (stats)
        self._watch: PauseWatch | None = None
        self._sources: weakref.WeakSet[KafkaSource] = weakref.WeakSet()
        self._total: tuple[float, int] = (0.0, 0)  # (read at, monotonic seconds; partitions)

    def producer(self) -> Pusher:
        return Pusher(
            self.conf.brokers,
            self.conf.topic,
            middleware=self.middleware,
            **self.conf.producer_options(),
        )

    def source(self, prefetch: int | None = None) -> KafkaSource:
        """A new group member. Once this broker's ``is_paused`` was asked (the Worker does
        before it starts), the member also stops fetching while the group is paused."""
        source = KafkaSource(self.conf, prefetch=prefetch, hold=self._held)
        self._sources.add(source)
        return source

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
        """ConnectionFailed naming the bootstrap servers and the reason (TLS, SASL, no answer
        within 5 s), or when the topic is missing and the broker would not create it on the
        first push (brokerq_kafka.probe). A missing topic the broker will create is logged as
        a warning (a worker started now reads it from its start)."""
        probe.check(self.conf, self.missing_topic)

    def check_notes(self) -> list[str]:
        problem = self.missing_topic()
        return [problem] if problem else []

    def missing_topic(self) -> str | None:
        """What is wrong with the topic (it does not exist yet, and whether the broker will
        create it on the first push), or None when it exists. ConnectionFailed when no
        broker answers within 5 s."""
        return probe.missing_topic(self.conf, self._client())

    def auto_creates_topics(self) -> bool | None:
        """The brokers' ``auto.create.topics.enable`` (None when it cannot be read)."""
        return probe.auto_creates_topics(self.conf)

    def stats(self) -> dict[str, int]:
        """pending (sum of ``lag:<partition>``) and oldest_age_seconds: brokerq_kafka.lag;
        retrying: records in the retry topics not yet committed; dead: dead letters still
        listed; paused: 1 while the group is paused."""
        from brokerq_kafka.retrytopics import retry_topics

        try:
            with self._lock:
                lags = self._lag.measure(self._client(), self.conf.topic)
                retrying = sum(
                    self._lag.pending(self._client(), t) for t in retry_topics(self.conf)
                )
                dead = self._dlq().open_count()
        except KafkaException as e:
            raise translate(e, f"kafka stats for {self.conf.topic!r}") from e
        watch = self._watch
        paused = watch.current if watch is not None else read_flag(self.conf)
        return {"retrying": retrying, "dead": dead, "paused": int(paused), **lag_stats(lags)}

    def dead_letters(self, limit: int = 100, refs: list[str] | None = None) -> list[DeadLetter]:
        """The DLQ records after the ``<group>.dlq-admin`` group's commits (ref
        "partition/offset", message id as in the logs); with ``refs``, only those whose ref
        or message id is listed."""
        with self._lock:
            letters = [
                _dead_letter(record) for record in self._dlq().records(10_000 if refs else limit)
            ]
        if refs is not None:
            letters = [d for d in letters if d.ref in refs or d.message.id in refs]
        return letters[:limit]

    def jobs(self, state: str, limit: int = 50, offset: int = 0) -> list[JobInfo]:
        """Dead letters only; other states raise NotSupported (brokerq_kafka.lag)."""
        return dead_listing(self, state, limit, offset)

    def retry_dead(self, refs: list[str] | None = None) -> int:
        """Republish dead letters (all, or those refs / message ids) to the topic at attempt
        1; how many."""
        resolved = self._resolve(refs)
        if resolved is not None and not resolved:
            return 0
        with self._lock:
            return self._dlq().retry(resolved)

    def purge_dead(self, refs: list[str] | None = None) -> int:
        """Skip dead letters (all, or those refs / message ids); the records stay in the
        topic until its retention, but are never listed again. How many."""
        if refs is None:
            with self._lock:
                return self._dlq().purge()
        resolved = self._resolve(refs)
        if not resolved:
            return 0
        with self._lock:
            return self._dlq().retry(resolved, republish=False)

    # -- job control (issue 15) -------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo:
        """The dead letter whose message id (or ref) is ``job_id``: state "dead" with its
        attempt, last error and failure time (brokerq_kafka.deadjobs). Kafka keeps no
        per-job state, so any other id raises NotSupported, saying so."""
        check_job_id(job_id)
        with self._lock:
            records = self._dlq().records(10_000)
        return dead_job(records, job_id, self.conf.topic)

    @property
    def pause_scope(self) -> str:
        """``topic <topic>, group <group>``: a pause holds for this consumer group only."""
        return f"topic {self.conf.topic}, group {self.conf.group}"

    def pause(self) -> None:
        """Pause the group: every member stops starting jobs within a second (running ones
        finish; what was fetched is given back, uncommitted) and stops fetching. The flag is
        a record in ``<topic>.brokerq-control`` (created if missing), so it holds for members
        started later. DeliveryError when Kafka does not acknowledge it."""
        self._write(True)

    def resume(self) -> None:
        """Undo ``pause`` for every member of the group."""
        self._write(False)

    def is_paused(self) -> bool:
        """The group's flag as this process last read it (a background reader keeps it; the
        first call waits until the control topic was read to its end)."""
        watch = self._watch
        if watch is None:
            with self._lock:
                if self._watch is None:
                    self._watch = PauseWatch(self.conf)
                watch = self._watch
        return watch.paused()

    def rate_limiter(self) -> PartitionShareLimiter:
        """The group's limit split among its members by their share of the topic's
        partitions (brokerq_kafka.sharelimit): this process may start ``limit x owned /
        total`` per period."""
        return PartitionShareLimiter(self._share)

    def _write(self, paused: bool) -> None:
        offset = write_flag(self.conf, paused)
        watch = self._watch
        if watch is not None:  # this process's own is_paused answers the new flag at once
            watch.wait_past(offset, 5.0)
        logger.info("kafka group %s %s", self.conf.group, "paused" if paused else "resumed")

    def _held(self) -> bool:
        watch = self._watch
        return watch is not None and watch.current

    def _share(self) -> tuple[int, int]:
        """(partitions of the main topic our sources own, partitions it has)."""
        owned = sum(s.owned() for s in list(self._sources))
        read_at, total = self._total
        if not total or time.monotonic() - read_at > 30:
            try:
                with self._lock:
                    total = len(self._partitions(self.conf.topic))
            except KafkaException as e:
                logger.warning("kafka %s: partition count unknown: %s", self.conf.topic, e)
            self._total = (time.monotonic(), total)
        return owned, total

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None
            self._lag.close()

    # -- internals ---------------------------------------------------------------------------
    def _resolve(self, refs: list[str] | None) -> list[str] | None:
        """``partition/offset`` refs for refs that may be message ids (None: all)."""
        if refs is None:
            return None
        out = [r for r in refs if _is_ref(r)]
        ids = {r for r in refs if not _is_ref(r)}
        if ids:
            found = self.dead_letters(10_000, sorted(ids))
            unknown = ids - {d.message.id for d in found}
            if unknown:
                raise ConfigError(
                    f"dead letter ref {sorted(unknown)[0]!r}: expected PARTITION/OFFSET or the "
                    "message id of a listed dead letter"
                )
            out += [d.ref for d in found]
        return out

    def _client(self) -> Consumer:
        """A consumer in the main group for metadata, watermarks and committed offsets (never
        subscribes or commits)."""
        if self._reader is None:
            config = self.conf.reader_config(
                self.conf.group, **{"client.id": f"brokerq-admin-{uuid.uuid4().hex[:8]}"}
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
        return members(self.conf.client("admin"), self.conf.group, self.conf.topic)

    def _dlq(self) -> DeadLetterAdmin:
        if self._admin is None:
            self._admin = DeadLetterAdmin(self.conf)
        return self._admin

    def _partitions(self, topic: str) -> list[int]:
        md = self._client().list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        return sorted(md.partitions)


def _is_ref(text: str) -> bool:
    part, sep, off = text.partition("/")
    return bool(sep) and part.isdigit() and off.isdigit()


def _dead_letter(record: Any) -> DeadLetter:
    dead = _wire.decode_dead(record)
    return DeadLetter(
        message=dead.message,
        error=dead.error,
        failed_at=dead.failed_at,
        ref=make_ref(record.partition(), record.offset()),
        traceback=dead.traceback,
    )
