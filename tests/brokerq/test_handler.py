from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from brokerq.errors import ConfigError, DecodeError
from brokerq.handler import Handler, import_handler, import_object
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

    def untyped(m):
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


class Point(TypedDict):
    x: int


@dataclass
class Pair:
    a: int
    b: str


def test_every_accepted_annotation_does_what_it_says() -> None:
    """JSON into dict / list / containers of models / TypedDict / dataclass / optional."""
    cases: list[tuple[Any, bytes, object]] = [
        (dict, b'{"a": 1}', {"a": 1}),
        (dict[str, int], b'{"a": 1}', {"a": 1}),
        (list, b"[1, 2]", [1, 2]),
        (list[int], b'[1, "2"]', [1, 2]),
        (list[Order], b'[{"id": 1, "item": "tea"}]', [Order(id=1, item="tea")]),
        (dict[str, Order], b'{"k": {"id": 2, "item": "x"}}', {"k": Order(id=2, item="x")}),
        (Order | None, b"null", None),
        (Point, b'{"x": 3}', {"x": 3}),
        (Pair, b'{"a": 1, "b": "c"}', Pair(1, "c")),
        (int, b"42", 42),
        (Any, b"raw", None),  # the envelope
    ]
    got: list[object] = []

    def handler(p: object) -> None:
        got.append(p)

    for ann, value, expected in cases:
        handler.__annotations__ = {"p": ann}
        msg = Message(value)
        Handler(handler)(msg)
        assert got.pop() == (msg if ann is Any else expected), ann


def test_a_payload_that_does_not_fit_is_a_decode_error() -> None:
    def on_dict(d: dict) -> None:  # type: ignore[type-arg]
        raise AssertionError("must not run")

    def on_orders(items: list[Order]) -> None:
        raise AssertionError("must not run")

    with pytest.raises(DecodeError, match="does not fit dict"):
        Handler(on_dict)(Message(b"[1]"))
    with pytest.raises(DecodeError, match="does not fit dict"):
        Handler(on_dict)(Message(b"not json"))
    with pytest.raises(DecodeError, match=r"does not fit list\[.*Order\]: 0\.item: Field required"):
        Handler(on_orders)(Message(b'[{"id": 1}]'))


def test_annotations_the_adapter_cannot_decode_are_refused_at_start_naming_the_parameter() -> None:
    def on_socket(conn: socket.socket) -> None:
        pass

    with pytest.raises(
        ConfigError, match=r"handler .*on_socket: parameter 'conn': annotation socket"
    ):
        Handler(on_socket)


def test_handlers_that_need_more_than_one_argument_are_refused() -> None:
    def three(a, b, c):
        pass

    def kw_only(*, m: Message) -> None:
        pass

    def defaults_ok(m: Message, retries: int = 3, *rest: Any, **extra: Any) -> None:
        pass

    with pytest.raises(
        ConfigError, match=r"three\(a, b, c\): parameter\(s\) 'b', 'c' have no default"
    ):
        Handler(three)
    with pytest.raises(ConfigError, match="keyword-only"):
        Handler(kw_only)
    Handler(defaults_ok)


def test_a_module_that_raises_on_import_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bq_raises_on_import.py").write_text(
        "import os\nos.environ['BQ_NO_SUCH_SETTING']\n"
    )
    (tmp_path / "bq_syntax_error.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"importing module 'bq_raises_on_import' raised KeyError"
    ):
        import_handler("bq_raises_on_import:f")
    with pytest.raises(ConfigError, match=r"'bq_syntax_error' has a syntax error: .*line 1"):
        import_handler("bq_syntax_error:f")
    with pytest.raises(ConfigError, match=r"^middleware 'no_such_mod:M': cannot import"):
        import_object("no_such_mod:M", "middleware")
    for name in ("bq_raises_on_import", "bq_syntax_error"):
        sys.modules.pop(name, None)
