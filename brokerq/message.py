"""The envelope a handler receives, and its wire codec for brokers that store whole envelopes.

``Message`` is a frozen slotted dataclass: it is built for every message on the hot path,
so it does no validation. Payload validation (pydantic) happens in the handler adapter.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from brokerq.errors import DecodeError

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A unique, time-sortable id: 48 bits of milliseconds then 80 random bits, as 26-char ULID."""
    n = (int(time.time() * 1000) << 80) | random.getrandbits(80)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


def to_bytes(value: bytes | str) -> bytes:
    """Accept ``str`` for convenience; messages carry bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"message value must be bytes or str, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Message:
    """One message or job as handed to a handler.

    ``created_at`` and ``not_before`` are unix seconds (floats); ``attempt`` is 1 on first delivery.
    """

    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    attempt: int = 1
    created_at: float = field(default_factory=time.time)
    not_before: float | None = None

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, tz=timezone.utc)

    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode()

    def json(self) -> Any:
        """The value parsed as JSON (raises DecodeError)."""
        try:
            return json.loads(self.value)
        except ValueError as e:
            raise DecodeError(f"message {self.id}: value is not JSON: {e}") from e

    def next_attempt(self) -> Message:
        return replace(self, attempt=self.attempt + 1)


class _Unfrozen:
    """``Message``'s exact slot layout without the frozen ``__setattr__``: ``build_message``
    fills one with plain attribute stores, then makes it a ``Message`` (``__class__``
    assignment is allowed between classes of identical layout)."""

    __slots__ = Message.__slots__

    def __init__(
        self,
        value: bytes,
        key: bytes | None,
        headers: Mapping[str, str],
        id: str,
        attempt: int,
        created_at: float,
        not_before: float | None,
    ) -> None:
        self.value = value
        self.key = key
        self.headers = headers
        self.id = id
        self.attempt = attempt
        self.created_at = created_at
        self.not_before = not_before


def build_message(
    value: bytes,
    key: bytes | None,
    headers: Mapping[str, str],
    id: str,
    attempt: int,
    created_at: float,
    not_before: float | None = None,
) -> Message:
    """``Message(...)`` for backends on the hot path: every field given, no defaults run.

    The frozen dataclass ``__init__`` stores each field through ``object.__setattr__``
    (~1 us a message, the largest single cost of consuming from Kafka); building the same
    slots unfrozen and then switching the class costs about a third of that (and half of
    calling each slot's ``__set__``). tests/brokerq/test_message.py checks it equals the
    constructor and stays frozen.
    """
    m = _Unfrozen(value, key, headers, id, attempt, created_at, not_before)
    m.__class__ = Message  # type: ignore[assignment]
    return m  # type: ignore[return-value]


_MAGIC = b"BQ1 "


def pack(msg: Message) -> bytes:
    """Encode a whole envelope: ``BQ1 <json meta>\\n<value>``. Compact and language-neutral."""
    meta: dict[str, Any] = {"id": msg.id, "a": msg.attempt, "c": msg.created_at}
    if msg.key is not None:
        meta["k"] = base64.b64encode(msg.key).decode()
    if msg.headers:
        meta["h"] = dict(msg.headers)
    if msg.not_before is not None:
        meta["nb"] = msg.not_before
    return _MAGIC + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + msg.value


def is_packed(data: bytes) -> bool:
    return data.startswith(_MAGIC)


def unpack(data: bytes) -> Message:
    """Decode what ``pack`` wrote; raise DecodeError naming what is wrong."""
    if not data.startswith(_MAGIC):
        raise DecodeError("not a brokerq envelope (missing BQ1 header)")
    nl = data.find(b"\n")
    if nl < 0:
        raise DecodeError("truncated brokerq envelope (no header end)")
    try:
        meta = json.loads(data[len(_MAGIC) : nl])
        key = base64.b64decode(meta["k"]) if "k" in meta else None
        return Message(
            value=data[nl + 1 :],
            key=key,
            headers=meta.get("h") or {},
            id=str(meta["id"]),
            attempt=int(meta.get("a", 1)),
            created_at=float(meta.get("c", 0.0)),
            not_before=float(meta["nb"]) if meta.get("nb") is not None else None,
        )
    except (ValueError, KeyError, TypeError) as e:
        raise DecodeError(f"corrupt brokerq envelope header: {e}") from e
