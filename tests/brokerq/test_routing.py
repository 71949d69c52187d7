"""Routing by job type through one worker, and the handlers: map in the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from brokerq.config import loads
from brokerq.embedded import MemoryBroker
from brokerq.errors import ConfigError
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.routing import Router
from brokerq.testing.contract import running


def as_handler(router: Router) -> Callable[..., Any]:
    """The Worker takes a Router where a handler goes (Worker.consume); running() is typed
    for plain handlers."""
    return cast("Callable[..., Any]", router)


SEEN: dict[str, list[bytes]] = {"welcome": [], "reminder": [], "fallback": [], "untyped": []}


def welcome(m: Message) -> None:
    SEEN["welcome"].append(m.value)


def reminder(value: bytes) -> None:
    SEEN["reminder"].append(value)


def fallback(m: Message) -> None:
    SEEN["fallback"].append(m.value)


def untyped(m: Message) -> None:
    SEEN["untyped"].append(m.value)


@pytest.fixture(autouse=True)
def _clear() -> None:
    for v in SEEN.values():
        v.clear()


def test_types_reach_their_handlers_and_unknown_is_dead_lettered() -> None:
    broker = MemoryBroker()
    router = Router({"email.welcome": welcome, "email.reminder": reminder}, default=untyped)
    with broker.producer() as p:
        p.push(b"w", type="email.welcome")
        p.push(b"r", type="email.reminder")
        p.push(b"plain")
        p.push(b"?", type="sms.send")
    with running(broker, as_handler(router), retry=RetryPolicy(max_attempts=3)):
        broker.join(10)
    assert (
        SEEN["welcome"] == [b"w"] and SEEN["reminder"] == [b"r"] and SEEN["untyped"] == [b"plain"]
    )
    (dead,) = broker.dead_letters()
    assert dead.message.value == b"?"
    assert "UnknownType: no handler for job type 'sms.send'" in dead.error
    assert dead.message.attempt == 1  # never retried


def test_catch_all_serves_unknown_and_untyped() -> None:
    broker = MemoryBroker()
    router = Router({"email.welcome": welcome, "*": fallback})
    with broker.producer() as p:
        p.push(b"a", type="other")
        p.push(b"b")
    with running(broker, as_handler(router)):
        broker.join(10)
    assert sorted(SEEN["fallback"]) == [b"a", b"b"]
    assert broker.dead_letters() == []


def test_config_handlers_map(tmp_path: Path) -> None:
    base = "embedded: {backend: memory}\n"
    cfg = loads(
        base + "handlers:\n  email.welcome: tests.brokerq.test_routing:welcome\n"
        "  '*': tests.brokerq.test_routing:fallback\n"
    )
    router = cfg.build_handler()
    assert isinstance(router, Router) and set(router.handlers) == {"email.welcome"}
    with pytest.raises(ConfigError, match="handler: required"):
        loads(base)
    bad = loads(base + "handlers: {x: tests.brokerq.test_routing:nope}\n")
    with pytest.raises(ConfigError, match="nope"):
        bad.build_handler()
