from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from brokerq.errors import ConfigError, DecodeError
from brokerq.handler import Handler, import_handler
from brokerq.message import Message


class Order(BaseModel):
    id: int
    item: str


def test_message_bytes_str_and_model_parameters() -> None:
    got: list[object] = []

    def on_msg(m: Message) -> None:
        got.append(m)

    def on_bytes(b: bytes) -> None:
        got.append(b)

    def on_text(s: str) -> None:
        got.append(s)

    def on_order(o: Order) -> None:
        got.append(o)

    def untyped(m):  # type: ignore[no-untyped-def]
        got.append(m)

    msg = Message(b'{"id": 1, "item": "tea"}')
    for fn in (on_msg, on_bytes, on_text, on_order, untyped):
        Handler(fn)(msg)
    assert got == [msg, msg.value, msg.value.decode(), Order(id=1, item="tea"), msg]


def test_model_validation_failure_is_a_decode_error_naming_the_field() -> None:
    def on_order(o: Order) -> None:
        raise AssertionError("must not run")

    with pytest.raises(DecodeError, match=r"does not fit Order: item: Field required"):
        Handler(on_order)(Message(b'{"id": 1}'))
    with pytest.raises(DecodeError, match="does not fit Order"):
        Handler(on_order)(Message(b"not json"))


def test_invalid_utf8_for_str_handler_is_a_decode_error() -> None:
    def on_text(s: str) -> None:
        raise AssertionError("must not run")

    with pytest.raises(DecodeError, match="not UTF-8"):
        Handler(on_text)(Message(b"\xff\xfe"))


def test_async_handler_runs_and_raises() -> None:
    seen: list[bytes] = []

    async def ok(m: Message) -> None:
        await asyncio.sleep(0)
        seen.append(m.value)

    async def bad(m: Message) -> None:
        raise ValueError("async boom")

    Handler(ok)(Message(b"a"))
    assert seen == [b"a"]
    with pytest.raises(ValueError, match="async boom"):
        Handler(bad)(Message(b"b"))


def test_import_handler_errors_name_the_problem() -> None:
    assert import_handler("json:dumps") is __import__("json").dumps
    assert import_handler("json.dumps") is __import__("json").dumps
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod'"):
        import_handler("no_such_mod:f")
    with pytest.raises(ConfigError, match="has no 'nope'"):
        import_handler("json:nope")
    with pytest.raises(ConfigError, match="not callable"):
        import_handler("json:__doc__")
    with pytest.raises(ConfigError, match="expected 'module:function'"):
        import_handler("justaname")


def test_handler_without_parameters_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must take one argument"):
        Handler(lambda: None)


def test_unresolvable_annotation_is_a_config_error() -> None:
    class Local(BaseModel):
        x: int

    def handler(p: Local) -> None:
        pass

    with pytest.raises(ConfigError, match="cannot resolve the annotation 'Local'"):
        Handler(handler)
