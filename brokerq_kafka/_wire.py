"""Every header brokerq reads or writes on Kafka, encoded and decoded here only.

A brokerq message sits in a record as: value and key as is, metadata in headers. Headers
starting with ``brokerq-`` are ours; everything else is the user's and reaches the handler
in ``Message.headers`` (so do the core's ``brokerq-type`` / ``brokerq-time-limit``).
A pushed record carries no ``brokerq-id`` by default (brokerq_kafka.pusher): its id is its
coordinates, ``topic/partition/offset``, the same for every redelivery of that record and
unique across topics; records written by other producers (go-queue's pusher writes plain
values) get theirs the same way. Retry and dead-letter records carry the id as a header, so
a message keeps it after it moved to another topic.

Record kinds: pushed (id), retry (id, attempt, due, error, origin), dead letter (id,
attempt, error, error type, traceback, origin, failed-at, and when the value was cut to
fit: original size and sha256).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from brokerq import headers as core
from brokerq.message import Message, build_message, new_id
from brokerq.outcome import Failure

PREFIX = core.PREFIX
ID = "brokerq-id"
ATTEMPT = "brokerq-attempt"
ERROR = "brokerq-error"
ERROR_TYPE = core.ERROR_TYPE
TRACEBACK = core.TRACEBACK
TOPIC = "brokerq-topic"
PARTITION = "brokerq-partition"
OFFSET = "brokerq-offset"
FAILED_AT = "brokerq-failed-at"
DUE = "brokerq-due"  # retry records: unix seconds before which the attempt must not run
ORIGINAL_SIZE = "brokerq-original-size"  # dead letters cut to fit: the value's size in bytes
SHA256 = "brokerq-sha256"  # dead letters cut to fit: hex sha256 of the whole value
_ORIGIN = (TOPIC, PARTITION, OFFSET)
TRANSPORT = frozenset(
    {ID, ATTEMPT, ERROR, ERROR_TYPE, TRACEBACK, *_ORIGIN, FAILED_AT, DUE, ORIGINAL_SIZE, SHA256}
)
"""Headers the kq transport keeps for itself; other ``brokerq-`` headers (brokerq.headers:
type, time limit, schedule, fire time) reach the handler in ``Message.headers``."""

Headers = list[tuple[str, Any]]


class Origin(NamedTuple):
    """Where a message was first read: its main-topic record."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class Decoded(NamedTuple):
    message: Message
    due: float | None  # retry records only
    origin: Origin | None  # retry records only


class IdSource:
    """Fast unique ids: a ULID-style random prefix per producer plus a counter (26 chars)."""

    def __init__(self) -> None:
        self._prefix = new_id()[:16]
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):010X}"


def record_headers(msg_id: str | None, headers: Mapping[str, str] | None) -> Headers | None:
    """The Kafka headers of a pushed message: our id (when one is given), then the user's
    headers; None when there are none (the record then carries no header at all)."""
    out: Headers = [(ID, msg_id)] if msg_id is not None else []
    if headers:
        out.extend(headers.items())
    return out or None


def decode(record: Any, id_prefix: str | None = None, crashes: int = 0) -> Decoded:
    """The brokerq Message for a consumed record; raises UnicodeDecodeError / ValueError.

    ``id_prefix`` is ``"topic/partition/"`` when the caller knows it; ``crashes`` is added to
    the attempt (deliveries that ended with their consumer dying, brokerq_kafka.offsets).
    """
    raw = record.headers()
    if not raw:  # a plain record (what push writes by default): nothing to parse
        return Decoded(plain_message(record, id_prefix, crashes), None, None)
    user: dict[str, str] = {}
    msg_id = ""
    attempt = 1
    due: float | None = None
    origin: list[str] | None = None
    if raw:
        for name, value in raw:
            text = value.decode() if value is not None else ""
            if name == ID:
                msg_id = text
            elif name not in TRANSPORT:
                user[name] = text
            elif name == ATTEMPT:
                attempt = int(text)
            elif name == DUE:
                due = float(text)
            elif name in _ORIGIN:
                origin = origin or ["", "0", "0"]
                origin[_ORIGIN.index(name)] = text
    if not msg_id:
        msg_id = f"{id_prefix or f'{record.topic()}/{record.partition()}/'}{record.offset()}"
    value = record.value()
    ts = record.timestamp()[1]
    message = build_message(
        value if value is not None else b"",
        record.key(),
        user,
        msg_id,
        attempt + crashes,
        ts / 1000.0 if ts and ts > 0 else 0.0,
    )
    if origin is None:
        return Decoded(message, due, None)
    return Decoded(message, due, Origin(origin[0], int(origin[1]), int(origin[2])))


def plain_message(record: Any, id_prefix: str | None = None, crashes: int = 0) -> Message:
    """The Message of a record without headers (``decode``'s fast path; the poller calls it
    directly): id ``topic/partition/offset``, attempt 1 plus ``crashes``, created_at from the
    record timestamp (0.0 when the record has none)."""
    ts = record.timestamp()[1]
    value = record.value()
    return build_message(
        value if value is not None else b"",
        record.key(),
        {},
        f"{id_prefix or f'{record.topic()}/{record.partition()}/'}{record.offset()}",
        1 + crashes,
        ts / 1000.0 if ts and ts > 0 else 0.0,
    )


def raw_message(record: Any) -> Message:
    """A best-effort Message for a record that cannot be decoded (for dead-lettering it)."""
    value = record.value()
    return Message(
        value=value if value is not None else b"",
        key=record.key(),
        headers={},
        id=f"{record.topic()}/{record.partition()}/{record.offset()}",
    )


def header_list(raw: Any) -> Headers:
    """A record's headers as a list of (name, value) pairs, whatever form they came in."""
    if not raw:
        return []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def user_headers(raw: Sequence[tuple[str, Any]] | None) -> Headers:
    """The headers of a raw record that are not brokerq metadata (kept as bytes)."""
    return [(n, v) for n, v in raw or () if n not in TRANSPORT]


def _failure_headers(failure: str, traceback_limit: int) -> Headers:
    f = Failure.parse(failure)
    out: Headers = [(ERROR, str(f)), (ERROR_TYPE, f.type)]
    if f.traceback and traceback_limit > 0:
        out.append((TRACEBACK, f.traceback[-traceback_limit:]))
    return out


def _origin_headers(origin: Origin) -> Headers:
    return [(TOPIC, origin.topic), (PARTITION, str(origin.partition)), (OFFSET, str(origin.offset))]


def retry_headers(message: Message, failure: str, origin: Origin, due: float) -> Headers:
    """Headers of the record that carries ``message``'s next attempt, due at unix ``due``."""
    out: Headers = list(message.headers.items())
    out += [(ID, message.id), (ATTEMPT, str(message.attempt + 1)), (DUE, f"{due:.3f}")]
    out += _failure_headers(failure, 0)
    out += _origin_headers(origin)
    return out


def dead_letter_headers(
    message: Message,
    failure: str,
    origin: Origin,
    failed_at: float,
    *,
    traceback_limit: int,
    cut_from: tuple[int, str] | None = None,
    user: Headers | None = None,
) -> Headers:
    """Headers of a dead letter: the user's headers, then where and why it died.

    ``cut_from``: (original size in bytes, hex sha256) when the value was cut to fit.
    ``user``: raw user headers (a record that could not be decoded) instead of the message's.
    """
    out: Headers = list(user) if user is not None else list(message.headers.items())
    out += [(ID, message.id), (ATTEMPT, str(message.attempt))]
    out += _failure_headers(failure, traceback_limit)
    out += _origin_headers(origin)
    out.append((FAILED_AT, f"{failed_at:.3f}"))
    if cut_from is not None:
        out += [(ORIGINAL_SIZE, str(cut_from[0])), (SHA256, cut_from[1])]
    return out


class DeadRecord(NamedTuple):
    """A dead-letter record read back: the message and what the headers say about it."""

    message: Message
    error: str
    error_type: str
    traceback: str
    failed_at: float | None
    origin: Origin | None
    original_size: int | None
    sha256: str


def decode_dead(record: Any) -> DeadRecord:
    """Read a dead-letter record (never raises on bad text: bytes are replaced)."""
    user: dict[str, str] = {}
    meta: dict[str, str] = {}
    for name, value in record.headers() or []:
        text = value.decode(errors="replace") if value is not None else ""
        (meta if name in TRANSPORT else user)[name] = text
    coords = f"{record.topic()}/{record.partition()}/{record.offset()}"
    try:
        attempt = int(meta.get(ATTEMPT, "1"))
        failed_at = float(meta[FAILED_AT]) if FAILED_AT in meta else None
        origin = (
            Origin(meta[TOPIC], int(meta[PARTITION]), int(meta[OFFSET])) if TOPIC in meta else None
        )
        size = int(meta[ORIGINAL_SIZE]) if ORIGINAL_SIZE in meta else None
    except (KeyError, ValueError):
        attempt, failed_at, origin, size = 1, None, None, None
    message = Message(
        value=record.value() or b"",
        key=record.key(),
        headers=user,
        id=meta.get(ID, coords),
        attempt=attempt,
        created_at=(record.timestamp()[1] or 0) / 1000.0,
    )
    return DeadRecord(
        message,
        meta.get(ERROR, ""),
        meta.get(ERROR_TYPE, ""),
        meta.get(TRACEBACK, ""),
        failed_at,
        origin,
        size,
        meta.get(SHA256, ""),
    )


def republish_headers(record: Any) -> Headers:
    """Headers for putting a dead letter back on the main topic: the user's, and its id
    (attempt back to 1)."""
    return [(n, v) for n, v in record.headers() or [] if n not in TRANSPORT or n == ID]


def reported_message(record: Any) -> Message:
    """The Message a failed delivery report describes (for Pusher ``on_error``)."""
    headers = {k: v.decode(errors="replace") for k, v in (record.headers() or []) if v is not None}
    return Message(
        value=record.value() or b"",
        key=record.key(),
        headers={k: v for k, v in headers.items() if k != ID},
        id=headers.get(ID, ""),
    )
