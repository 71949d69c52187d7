"""Batch handlers: one call for many messages (``def handle(batch: list[Message])``).

A handler whose first parameter is annotated ``list[Message]`` or ``list[SomeModel]`` (a
pydantic model, validated per item) receives batches: each worker thread collects up to
``max_size`` messages, waiting at most ``max_wait`` seconds after the first, then calls the
handler once. Returning means every item is done. Raising fails every item (each follows
the retry policy on its own attempt count); ``BatchFailed({index: error})`` fails only those
items. An item that does not validate into the model is dead-lettered alone and left out
of the call. Time limits apply to the whole call.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokerq.duration import Duration
from brokerq.errors import BatchFailed, ConfigError, DecodeError
from brokerq.handler import _limited, _LoopThread, import_handler
from brokerq.message import Message


class BatchConfig(BaseModel):
    """``batch: {max_size: 500, max_wait: 50ms}`` in a worker YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=100, ge=1, le=100_000, description="messages per call")
    max_wait: Duration = Field(default=0.05, description="after the first message, at most")


def batch_item_type(fn: Callable[..., Any]) -> type[Message] | type[BaseModel] | None:
    """``Message`` or the model for a ``list[...]``-annotated batch handler, else None."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    ann = params[0].annotation
    if isinstance(ann, str):
        hinted = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn).__call__
        try:
            ann = typing.get_type_hints(hinted).get(params[0].name, ann)
        except Exception:
            return None
    if typing.get_origin(ann) is not list:
        return None
    (item,) = typing.get_args(ann) or (None,)
    if item is Message:
        return Message
    if inspect.isclass(item) and issubclass(item, BaseModel):
        return item
    return None


class BatchHandler:
    """A user function called with a list of messages (or validated models)."""

    def __init__(self, fn: Callable[..., Any] | str, config: BatchConfig | None = None) -> None:
        self.fn = import_handler(fn) if isinstance(fn, str) else fn
        self.name = getattr(self.fn, "__qualname__", repr(self.fn))
        item = batch_item_type(self.fn)
        if item is None:
            raise ConfigError(
                f"handler {self.name}: a batch handler takes one list[Message] or "
                "list[Model] parameter"
            )
        self.item: type[Message] | type[BaseModel] = item
        self.config = config or BatchConfig()
        self.is_async = inspect.iscoroutinefunction(self.fn)

    def decode(self, messages: Sequence[Message]) -> tuple[list[Any], dict[int, DecodeError]]:
        """The items to pass, and the index (in ``messages``) of each one that did not fit."""
        if self.item is Message:
            return list(messages), {}
        model = typing.cast(type[BaseModel], self.item)
        items: list[Any] = []
        bad: dict[int, DecodeError] = {}
        for i, m in enumerate(messages):
            try:
                items.append(model.model_validate_json(m.value))
            except ValidationError as e:
                bad[i] = DecodeError(f"message {m.id}: payload does not fit {model.__name__}: {e}")
        return items, bad

    def __call__(self, items: list[Any], time_limit: float | None = None) -> None:
        if not self.is_async:
            self.fn(items)
        elif time_limit is None:
            _LoopThread.run(self.fn(items))
        else:
            _LoopThread.run(_limited(self.fn(items), time_limit))


def item_errors(error: BaseException | None, size: int) -> dict[int, BaseException]:
    """Each failed item's error for a batch call that ended with ``error``."""
    if error is None:
        return {}
    if isinstance(error, BatchFailed):
        out: dict[int, BaseException] = {}
        for index, e in error.failures.items():
            if not 0 <= index < size:
                continue
            out[index] = e if isinstance(e, BaseException) else RuntimeError(str(e))
        return out
    return dict.fromkeys(range(size), error)
