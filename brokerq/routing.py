"""Routing by job type: one worker serves several handlers (asynq's ServeMux, Celery task names).

A message's type is its ``brokerq-type`` header (``push(..., type="email.welcome")``). The
``handlers:`` map of a worker config names a handler per type; ``"*"`` catches every other
type, and the config's ``handler:`` (when given) serves messages without a type, as go-queue
bodies are. A message whose type has no handler is dead-lettered at once with an error
naming the type (``UnknownType``), never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from brokerq.errors import ConfigError, Drop
from brokerq.handler import Handler
from brokerq.headers import TYPE
from brokerq.message import Message

CATCH_ALL = "*"


class UnknownType(Drop):
    """No handler is registered for a message's type (dead-lettered, not retried)."""


class Router:
    """Picks the handler for each message by its type; built once, every handler imported.

    ``handlers``: type -> handler (a callable or ``module:function``), ``"*"`` optional.
    ``default``: the handler of messages without a type (None: ``"*"`` serves them too).
    ConfigError when a handler cannot be imported, or when there is no handler at all.
    """

    def __init__(
        self,
        handlers: Mapping[str, Callable[..., Any] | str],
        default: Callable[..., Any] | str | None = None,
    ) -> None:
        built: dict[str, Handler] = {}
        for name, fn in handlers.items():
            if not name:
                raise ConfigError("handlers: a job type must not be empty")
            built[name] = fn if isinstance(fn, Handler) else Handler(fn)
        self.handlers = built
        self.catch_all = built.pop(CATCH_ALL, None)
        self.default = (
            None
            if default is None
            else default
            if isinstance(default, Handler)
            else Handler(default)
        )
        if not self.handlers and self.catch_all is None and self.default is None:
            raise ConfigError("no handler: give handler: or a handlers: map")
        names = [f"{t}={h.name}" for t, h in self.handlers.items()]
        if self.catch_all is not None:
            names.append(f"*={self.catch_all.name}")
        if self.default is not None:
            names.append(f"(untyped)={self.default.name}")
        self.name = ", ".join(names)

    def pick(self, message: Message) -> Handler:
        """The handler for ``message``; UnknownType when none serves its type."""
        kind = message.headers.get(TYPE)
        if kind is None:
            handler = self.default or self.catch_all
            if handler is None:
                raise UnknownType(
                    f"message {message.id} has no {TYPE} header and there is no default "
                    "handler (set handler: or a '*' entry)"
                )
            return handler
        handler = self.handlers.get(kind) or self.catch_all
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise UnknownType(f"no handler for job type {kind!r} (known: {known})")
        return handler
