"""How a brokerq message sits in a Kafka record: value and key as is, metadata in headers.

Headers starting with ``brokerq-`` are ours (id, attempt, dead-letter details); everything
else is the user's and reaches the handler in ``Message.headers``. Records written by other
producers (no ``brokerq-id``) get a stable id from their coordinates, ``topic/partition/offset``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from brokerq.message import Message, build_message, new_id
from brokerq.tracing import inject

PREFIX = "brokerq-"
ID = "brokerq-id"
ATTEMPT = "brokerq-attempt"
ERROR = "brokerq-error"
TOPIC = "brokerq-topic"
PARTITION = "brokerq-partition"
OFFSET = "brokerq-offset"
FAILED_AT = "brokerq-failed-at"
TRANSPORT = frozenset({ID, ATTEMPT, ERROR, TOPIC, PARTITION, OFFSET, FAILED_AT})
"""Headers the kq transport keeps for itself; other ``brokerq-`` headers (brokerq.headers:
type, time limit, schedule, fire time) reach the handler in ``Message.headers``."""


class IdSource:
    """Fast unique ids: a ULID-style random prefix per producer plus a counter (26 chars)."""

    def __init__(self) -> None:
        self._prefix = new_id()[:16]
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):010X}"


def record_headers(
    msg_id: str, headers: Mapping[str, str] | None, tracing: bool = False
) -> list[tuple[str, Any]]:
    """The Kafka headers for a pushed message: our id, the user's headers, trace context."""
    out: list[tuple[str, Any]] = [(ID, msg_id)]
    if headers:
        out.extend(headers.items())
    if tracing:
        carrier: dict[str, str] = {}
        inject(carrier)
        out.extend(carrier.items())
    return out


def decode(record: Any, id_prefix: str | None = None) -> Message:
    """The brokerq Message for a consumed record; raises UnicodeDecodeError / ValueError.

    ``id_prefix`` is ``"topic/partition/"`` when the caller knows it (the id of a record
    without a ``brokerq-id`` header is ``topic/partition/offset``).
    """
    user: dict[str, str] = {}
    msg_id = ""
    attempt = 1
    raw = record.headers()
    if raw:
        for name, value in raw:
            text = value.decode() if value is not None else ""
            if name in TRANSPORT:
                if name == ID:
                    msg_id = text
                elif name == ATTEMPT:
                    attempt = int(text)
            else:
                user[name] = text
    if not msg_id:
        if id_prefix is None:
            msg_id = f"{record.topic()}/{record.partition()}/{record.offset()}"
        else:
            msg_id = f"{id_prefix}{record.offset()}"
    value = record.value()
    ts = record.timestamp()[1]
    return build_message(
        value if value is not None else b"",
        record.key(),
        user,
        msg_id,
        attempt,
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


def dead_letter_headers(
    message: Message, error: str, topic: str, partition: int, offset: int, failed_at: float
) -> list[tuple[str, Any]]:
    """Headers of a dead-letter record: the original headers plus where and why it died."""
    out: list[tuple[str, Any]] = list(message.headers.items())
    out += [
        (ID, message.id),
        (ATTEMPT, str(message.attempt)),
        (ERROR, error),
        (TOPIC, topic),
        (PARTITION, str(partition)),
        (OFFSET, str(offset)),
        (FAILED_AT, f"{failed_at:.3f}"),
    ]
    return out
