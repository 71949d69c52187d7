from __future__ import annotations

import dataclasses

import pytest

from brokerq.errors import DecodeError
from brokerq.message import Message, build_message, new_id, pack, to_bytes, unpack


def test_ids_are_unique_and_time_sortable() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)
    # milliseconds prefix (first 10 chars) never decreases
    prefixes = [i[:10] for i in ids]
    assert prefixes == sorted(prefixes)


def test_pack_roundtrip_keeps_every_field() -> None:
    msg = Message(b"\x00body\n", key=b"k\xff", headers={"a": "1"}, attempt=3, not_before=12.5)
    back = unpack(pack(msg))
    assert back == msg


def test_pack_roundtrip_without_optional_fields() -> None:
    msg = Message(b"v")
    assert unpack(pack(msg)) == msg


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"hello", "missing BQ1 header"),
        (b"BQ1 {}", "no header end"),
        (b"BQ1 {not json\nx", "corrupt"),
        (b'BQ1 {"a":1}\nx', "corrupt"),
    ],
)
def test_unpack_rejects_garbage(data: bytes, needle: str) -> None:
    with pytest.raises(DecodeError, match=needle):
        unpack(data)


def test_to_bytes() -> None:
    assert to_bytes("é") == "é".encode()
    assert to_bytes(b"x") == b"x"
    with pytest.raises(TypeError, match="bytes or str"):
        to_bytes(3)  # type: ignore[arg-type]


def test_json_helper_raises_decode_error() -> None:
    assert Message(b'{"a": 1}').json() == {"a": 1}
    with pytest.raises(DecodeError, match="not JSON"):
        Message(b"{").json()


def test_build_message_equals_the_constructor() -> None:
    args = (b"v", b"k", {"h": "1"}, "id-1", 2, 12.5, 99.0)
    built = build_message(*args)
    assert built == Message(*args)
    assert type(built) is Message
    assert build_message(*args[:6]) == Message(*args[:6])
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.value = b"changed"  # type: ignore[misc]
    assert dataclasses.replace(built, attempt=3).attempt == 3
    assert Message.__slots__ == (
        "value",
        "key",
        "headers",
        "id",
        "attempt",
        "created_at",
        "not_before",
    )
